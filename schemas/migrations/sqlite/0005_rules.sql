-- Rules engine: per-patient rule configuration, alert episodes and events.
-- Times are unix microseconds.

CREATE TABLE IF NOT EXISTS patient_rules (
    patient_id  TEXT PRIMARY KEY,
    rules       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS patient_rules_updated_idx ON patient_rules (updated_at);

CREATE TABLE IF NOT EXISTS alerts (
    episode_id     TEXT PRIMARY KEY,
    patient_id     TEXT NOT NULL,
    rule_id        TEXT NOT NULL,
    rule_kind      TEXT NOT NULL,
    program        TEXT NOT NULL,
    code           TEXT NOT NULL,
    severity       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'closed')),
    opened_at      INTEGER NOT NULL,
    last_event_at  INTEGER NOT NULL,
    resolved_at    INTEGER,
    summary        TEXT NOT NULL,
    evidence       TEXT NOT NULL,
    last_event_id  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_patient_idx ON alerts (patient_id, opened_at);

CREATE TABLE IF NOT EXISTS alert_events (
    event_id      TEXT PRIMARY KEY,
    episode_id    TEXT NOT NULL,
    patient_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    reading_time  INTEGER NOT NULL,
    detected_at   INTEGER NOT NULL,
    payload       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_episode_idx ON alert_events (episode_id);
