DELETE FROM alert_care_teams WHERE patient_id = $1
