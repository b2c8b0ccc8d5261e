-- The clinician workspace (issue #16): user accounts, web sessions, and the
-- nurses of each patient's care team. Times are unix microseconds.

CREATE TABLE IF NOT EXISTS users (
    user_id        TEXT PRIMARY KEY,
    display_name   TEXT NOT NULL,
    email          TEXT,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'physician', 'nurse', 'specialist')),
    physician_id   TEXT,
    language       TEXT NOT NULL DEFAULT 'fr' CHECK (language IN ('fr', 'en')),
    time_zone      TEXT NOT NULL DEFAULT 'Europe/Paris',
    password_hash  TEXT,
    oidc_subject   TEXT UNIQUE,
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   INTEGER,
    created_at     INTEGER NOT NULL,
    disabled_at    INTEGER,
    CHECK ((role = 'physician') = (physician_id IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS users_physician ON users (physician_id) WHERE physician_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS web_sessions (
    session_hash   TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (user_id),
    csrf_token     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    origin         TEXT
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions (user_id);
CREATE INDEX IF NOT EXISTS web_sessions_expiry ON web_sessions (expires_at);

CREATE TABLE IF NOT EXISTS care_team_nurses (
    patient_id     TEXT NOT NULL,
    nurse_id       TEXT NOT NULL,
    PRIMARY KEY (patient_id, nurse_id)
);
CREATE INDEX IF NOT EXISTS care_team_nurses_nurse ON care_team_nurses (nurse_id);

-- OpenID Connect sign-ins in progress (state, nonce, PKCE verifier), keyed by the
-- SHA-256 of their state and bound to the browser that began them (the SHA-256 of
-- a random cookie): any replica can finish a sign-in another began. Deleted when
-- used; older than 10 minutes they are refused and purged.
CREATE TABLE IF NOT EXISTS web_oidc_logins (
    state_hash     TEXT PRIMARY KEY,
    binding_hash   TEXT NOT NULL,
    pending        TEXT NOT NULL,
    next           TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
