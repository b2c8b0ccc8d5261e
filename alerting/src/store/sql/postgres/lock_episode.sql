SELECT state, patient_id FROM alert_episodes WHERE episode_id = $1 FOR UPDATE
