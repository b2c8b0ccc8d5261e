-- Alerting: care teams, episodes, durable outbox, acknowledgments, audit trail.

CREATE TABLE IF NOT EXISTS alert_physicians (
    physician_id  text PRIMARY KEY,
    mobile        text UNIQUE,
    doc           jsonb NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS alert_care_teams (
    patient_id    text PRIMARY KEY,
    responsible   text NOT NULL REFERENCES alert_physicians (physician_id),
    doc           jsonb NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per episode; `state` is the serialized EpisodeState (NULL while
-- the first event is being applied). The scheduler re-plans rows whose
-- next_wakeup has passed.
CREATE TABLE IF NOT EXISTS alert_episodes (
    episode_id    text PRIMARY KEY,
    patient_id    text NOT NULL,
    state         jsonb,
    severity      text,
    resolved_at   timestamptz,
    next_wakeup   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_episodes_wakeup ON alert_episodes (next_wakeup) WHERE next_wakeup IS NOT NULL;

-- Durable outbox: one row per notification key (episode:step:recipient:channel).
CREATE TABLE IF NOT EXISTS alert_outbox (
    key                 text PRIMARY KEY,
    episode_id          text NOT NULL,
    recipient           text NOT NULL,
    channel             text NOT NULL,
    notification        jsonb NOT NULL,
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL,
    claimed_by          text,
    claimed_until       timestamptz,
    created_at          timestamptz NOT NULL,
    sent_at             timestamptz,
    provider_message_id text,
    last_error          text
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS alert_outbox_episode ON alert_outbox (episode_id);
CREATE INDEX IF NOT EXISTS alert_outbox_recipient ON alert_outbox (recipient, created_at);

-- SMS acknowledgment codes, per (episode, physician).
CREATE TABLE IF NOT EXISTS alert_ack_codes (
    episode_id    text NOT NULL,
    physician_id  text NOT NULL,
    code          text NOT NULL,
    PRIMARY KEY (episode_id, physician_id)
);
CREATE INDEX IF NOT EXISTS alert_ack_codes_lookup ON alert_ack_codes (physician_id, code);

-- Who acknowledged, when, how. A link nonce can be used once.
CREATE TABLE IF NOT EXISTS alert_acknowledgments (
    id            bigserial PRIMARY KEY,
    episode_id    text NOT NULL,
    physician_id  text NOT NULL,
    via           text NOT NULL,
    severity      text NOT NULL,
    at            timestamptz NOT NULL,
    nonce         text UNIQUE
);

-- Append-only audit trail: every episode state change and delivery attempt.
CREATE TABLE IF NOT EXISTS alert_audit (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL,
    episode_id    text NOT NULL,
    entry_type    text NOT NULL,
    record        jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_audit_episode ON alert_audit (episode_id, id);

CREATE OR REPLACE FUNCTION alert_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_audit is append-only';
END;
$$;
DROP TRIGGER IF EXISTS alert_audit_no_change ON alert_audit;
CREATE TRIGGER alert_audit_no_change BEFORE UPDATE OR DELETE ON alert_audit
    FOR EACH ROW EXECUTE FUNCTION alert_audit_append_only();
