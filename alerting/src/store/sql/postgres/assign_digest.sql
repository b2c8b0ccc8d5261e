UPDATE alert_digest_entries SET digest_key = $1 WHERE key = ANY($2) AND digest_key IS NULL
