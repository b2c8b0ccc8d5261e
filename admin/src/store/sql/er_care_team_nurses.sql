DELETE FROM care_team_nurses WHERE patient_id = $1
