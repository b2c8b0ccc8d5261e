SELECT recipient FROM alert_digest_entries WHERE digest_key IS NULL GROUP BY recipient ORDER BY min(created_at)
