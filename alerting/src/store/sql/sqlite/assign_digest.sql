UPDATE alert_digest_entries SET digest_key = $1 WHERE key IN (SELECT value FROM json_each($2)) AND digest_key IS NULL
