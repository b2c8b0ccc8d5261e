SELECT record FROM alert_audit WHERE episode_id = $1 ORDER BY id
