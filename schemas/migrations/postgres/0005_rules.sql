-- Rules engine: per-patient rule configuration, alert episodes and events.

-- A patient's rules: the JSON of vitalwatch_rules::PatientRules (program plus
-- the physician's changes). Written by `vitalwatch rules-config set`, polled by
-- the rules workers (changes take effect without a restart).
CREATE TABLE IF NOT EXISTS patient_rules (
    patient_id  text PRIMARY KEY,
    rules       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS patient_rules_updated_idx ON patient_rules (updated_at);

-- One row per alert episode (patient, rule, opening reading), upserted by the
-- rules worker from the events it publishes.
CREATE TABLE IF NOT EXISTS alerts (
    episode_id     text PRIMARY KEY,
    patient_id     text NOT NULL,
    rule_id        text NOT NULL,
    rule_kind      text NOT NULL,
    program        text NOT NULL,
    code           text NOT NULL,
    severity       text NOT NULL,
    status         text NOT NULL CHECK (status IN ('open', 'resolved', 'closed')),
    opened_at      timestamptz NOT NULL,
    last_event_at  timestamptz NOT NULL,
    resolved_at    timestamptz,
    summary        text NOT NULL,
    evidence       jsonb NOT NULL,
    last_event_id  text NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_patient_idx ON alerts (patient_id, opened_at DESC);
CREATE INDEX IF NOT EXISTS alerts_open_idx ON alerts (status) WHERE status = 'open';

-- Every alert event as published (protobuf AlertEvent in `payload`).
CREATE TABLE IF NOT EXISTS alert_events (
    event_id      text PRIMARY KEY,
    episode_id    text NOT NULL,
    patient_id    text NOT NULL,
    kind          text NOT NULL,
    severity      text NOT NULL,
    reading_time  timestamptz NOT NULL,
    detected_at   timestamptz NOT NULL,
    payload       bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_episode_idx ON alert_events (episode_id);
