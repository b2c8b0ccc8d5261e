SELECT patient_id FROM alerts WHERE episode_id = $1
UNION ALL SELECT patient_id FROM alert_episodes WHERE episode_id = $1 LIMIT 1
