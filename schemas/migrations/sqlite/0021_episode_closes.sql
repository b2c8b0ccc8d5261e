-- See the PostgreSQL migration 0021: physician closes for the rules worker.
CREATE TABLE IF NOT EXISTS episode_closes (
    episode_id    TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    requested_at  INTEGER NOT NULL,
    applied_at    INTEGER
);
CREATE INDEX IF NOT EXISTS episode_closes_pending ON episode_closes (requested_at) WHERE applied_at IS NULL;
CREATE INDEX IF NOT EXISTS episode_closes_patient ON episode_closes (patient_id);
