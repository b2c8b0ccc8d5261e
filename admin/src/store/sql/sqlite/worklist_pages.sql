SELECT episode_id, notification, status, created_at, sent_at, recipient, channel FROM alert_outbox
WHERE episode_id IN (SELECT value FROM json_each($1)) ORDER BY created_at, key
