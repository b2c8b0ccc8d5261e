UPDATE alert_episodes SET state = $2, severity = $3, resolved_at = $4, next_wakeup = $5, updated_at = $6
WHERE episode_id = $1
