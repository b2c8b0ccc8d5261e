SELECT patient_id FROM care_team_nurses WHERE nurse_id = $1 ORDER BY patient_id
