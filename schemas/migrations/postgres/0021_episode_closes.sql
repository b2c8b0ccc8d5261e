-- A physician closed an alert episode (admin API or CLI): the rules worker that
-- owns the patient applies it to its engine state (the rule stays quiet until
-- its condition clears or gets more severe) and publishes the RESOLVED event,
-- then sets applied_at. A rebuilt worker re-applies closes of episodes that
-- are still open in its replayed state.
CREATE TABLE IF NOT EXISTS episode_closes (
    episode_id    text PRIMARY KEY,
    patient_id    text NOT NULL,
    rule_id       text NOT NULL,
    requested_at  timestamptz NOT NULL,
    applied_at    timestamptz
);
CREATE INDEX IF NOT EXISTS episode_closes_pending ON episode_closes (requested_at) WHERE applied_at IS NULL;
CREATE INDEX IF NOT EXISTS episode_closes_patient ON episode_closes (patient_id);
