DELETE FROM alert_episodes WHERE patient_id = $1
