INSERT INTO alert_outbox (key, episode_id, recipient, channel, notification, next_attempt_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING
