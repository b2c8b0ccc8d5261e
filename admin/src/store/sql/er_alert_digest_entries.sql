DELETE FROM alert_digest_entries WHERE episode_id IN (SELECT episode_id FROM alert_episodes WHERE patient_id = $1 UNION SELECT episode_id FROM alerts WHERE patient_id = $1)
