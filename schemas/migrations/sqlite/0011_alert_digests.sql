-- Alerting digests (see the PostgreSQL migration). Times are unix microseconds.

CREATE TABLE IF NOT EXISTS alert_digest_entries (
    key           TEXT PRIMARY KEY,
    recipient     TEXT NOT NULL,
    episode_id    TEXT NOT NULL,
    entry         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    digest_key    TEXT
);
CREATE INDEX IF NOT EXISTS alert_digest_pending ON alert_digest_entries (recipient, created_at) WHERE digest_key IS NULL;
CREATE INDEX IF NOT EXISTS alert_digest_of ON alert_digest_entries (digest_key) WHERE digest_key IS NOT NULL;
