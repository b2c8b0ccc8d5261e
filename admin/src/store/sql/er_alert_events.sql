DELETE FROM alert_events WHERE patient_id = $1
