SELECT a.episode_id, a.severity FROM alert_ack_codes a JOIN alert_episodes e ON e.episode_id = a.episode_id
WHERE a.physician_id = $1 AND a.code = $2 AND e.resolved_at IS NULL
ORDER BY e.updated_at DESC LIMIT 1
