-- Alerting: care teams, episodes, durable outbox, acknowledgments, audit trail.
-- Times are unix microseconds.

CREATE TABLE IF NOT EXISTS alert_physicians (
    physician_id  TEXT PRIMARY KEY,
    mobile        TEXT UNIQUE,
    doc           TEXT NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS alert_care_teams (
    patient_id    TEXT PRIMARY KEY,
    responsible   TEXT NOT NULL REFERENCES alert_physicians (physician_id),
    doc           TEXT NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS alert_episodes (
    episode_id    TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL,
    state         TEXT,
    severity      TEXT,
    resolved_at   INTEGER,
    next_wakeup   INTEGER,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_episodes_wakeup ON alert_episodes (next_wakeup) WHERE next_wakeup IS NOT NULL;

CREATE TABLE IF NOT EXISTS alert_outbox (
    key                 TEXT PRIMARY KEY,
    episode_id          TEXT NOT NULL,
    recipient           TEXT NOT NULL,
    channel             TEXT NOT NULL,
    notification        TEXT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    claimed_by          TEXT,
    claimed_until       INTEGER,
    created_at          INTEGER NOT NULL,
    sent_at             INTEGER,
    provider_message_id TEXT,
    last_error          TEXT
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS alert_outbox_episode ON alert_outbox (episode_id);
CREATE INDEX IF NOT EXISTS alert_outbox_recipient ON alert_outbox (recipient, created_at);

CREATE TABLE IF NOT EXISTS alert_ack_codes (
    episode_id    TEXT NOT NULL,
    physician_id  TEXT NOT NULL,
    code          TEXT NOT NULL,
    PRIMARY KEY (episode_id, physician_id)
);
CREATE INDEX IF NOT EXISTS alert_ack_codes_lookup ON alert_ack_codes (physician_id, code);

CREATE TABLE IF NOT EXISTS alert_acknowledgments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id    TEXT NOT NULL,
    physician_id  TEXT NOT NULL,
    via           TEXT NOT NULL,
    severity      TEXT NOT NULL,
    at            INTEGER NOT NULL,
    nonce         TEXT UNIQUE
);

CREATE TABLE IF NOT EXISTS alert_audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    episode_id    TEXT NOT NULL,
    entry_type    TEXT NOT NULL,
    record        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_audit_episode ON alert_audit (episode_id, id);

CREATE TRIGGER IF NOT EXISTS alert_audit_no_update BEFORE UPDATE ON alert_audit
BEGIN
    SELECT RAISE(ABORT, 'alert_audit is append-only');
END;
CREATE TRIGGER IF NOT EXISTS alert_audit_no_delete BEFORE DELETE ON alert_audit
BEGIN
    SELECT RAISE(ABORT, 'alert_audit is append-only');
END;
