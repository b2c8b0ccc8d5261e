SELECT notification, status, attempts, provider_message_id, last_error FROM alert_outbox
WHERE episode_id = $1 ORDER BY created_at, key
