INSERT INTO alert_digest_entries (key, recipient, episode_id, entry, created_at)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING
