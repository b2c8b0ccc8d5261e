SELECT entry, key FROM alert_digest_entries WHERE recipient = $1 AND digest_key IS NULL
ORDER BY created_at, key
