-- The clinician workspace (issue #16): user accounts, web sessions, and the
-- nurses of each patient's care team (who may read and triage that patient).
-- Passwords are Argon2id PHC strings; a session is stored by the SHA-256 of its
-- cookie secret, never the secret itself.

CREATE TABLE IF NOT EXISTS users (
    user_id        text PRIMARY KEY,
    display_name   text NOT NULL,
    email          text,
    role           text NOT NULL CHECK (role IN ('operator', 'physician', 'nurse', 'specialist')),
    physician_id   text,
    language       text NOT NULL DEFAULT 'fr' CHECK (language IN ('fr', 'en')),
    time_zone      text NOT NULL DEFAULT 'Europe/Paris',
    password_hash  text,
    oidc_subject   text UNIQUE,
    failed_logins  integer NOT NULL DEFAULT 0,
    locked_until   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz,
    CHECK ((role = 'physician') = (physician_id IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS users_physician ON users (physician_id) WHERE physician_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS web_sessions (
    session_hash   text PRIMARY KEY,
    user_id        text NOT NULL REFERENCES users (user_id),
    csrf_token     text NOT NULL,
    created_at     timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    origin         text
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions (user_id);
CREATE INDEX IF NOT EXISTS web_sessions_expiry ON web_sessions (expires_at);

CREATE TABLE IF NOT EXISTS care_team_nurses (
    patient_id     text NOT NULL,
    nurse_id       text NOT NULL,
    PRIMARY KEY (patient_id, nurse_id)
);
CREATE INDEX IF NOT EXISTS care_team_nurses_nurse ON care_team_nurses (nurse_id);

-- OpenID Connect sign-ins in progress (state, nonce, PKCE verifier), keyed by the
-- SHA-256 of their state and bound to the browser that began them (the SHA-256 of
-- a random cookie): any replica can finish a sign-in another began. Deleted when
-- used; older than 10 minutes they are refused and purged.
CREATE TABLE IF NOT EXISTS web_oidc_logins (
    state_hash     text PRIMARY KEY,
    binding_hash   text NOT NULL,
    pending        text NOT NULL,
    next           text NOT NULL,
    created_at     timestamptz NOT NULL
);
