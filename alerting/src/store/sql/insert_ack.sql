INSERT INTO alert_acknowledgments (episode_id, physician_id, via, severity, at, nonce)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (nonce) DO NOTHING
