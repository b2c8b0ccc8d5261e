INSERT INTO alert_audit (at, episode_id, entry_type, record) VALUES ($1, $2, $3, $4)
