SELECT a.code FROM alert_ack_codes a JOIN alert_episodes e ON e.episode_id = a.episode_id
WHERE a.physician_id = $1 AND e.resolved_at IS NULL
