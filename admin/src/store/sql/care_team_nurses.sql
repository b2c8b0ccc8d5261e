SELECT nurse_id FROM care_team_nurses WHERE patient_id = $1 ORDER BY nurse_id
