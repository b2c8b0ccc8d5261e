-- Alerting digests: notifications folded by the hourly cap (or INFO alerts) wait here
-- until the recipient's digest email is formed. `digest_key` is NULL while pending,
-- then the outbox key of the digest email that lists the entry.

CREATE TABLE IF NOT EXISTS alert_digest_entries (
    key           text PRIMARY KEY,          -- episode:step:recipient:digest
    recipient     text NOT NULL,
    episode_id    text NOT NULL,
    entry         jsonb NOT NULL,            -- caps::DigestEntry
    created_at    timestamptz NOT NULL,
    digest_key    text
);
CREATE INDEX IF NOT EXISTS alert_digest_pending ON alert_digest_entries (recipient, created_at) WHERE digest_key IS NULL;
CREATE INDEX IF NOT EXISTS alert_digest_of ON alert_digest_entries (digest_key) WHERE digest_key IS NOT NULL;
