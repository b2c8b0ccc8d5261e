INSERT INTO alert_ack_codes (episode_id, physician_id, code, severity) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
