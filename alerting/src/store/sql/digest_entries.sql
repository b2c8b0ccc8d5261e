SELECT entry FROM alert_digest_entries WHERE digest_key = $1 ORDER BY created_at, key
