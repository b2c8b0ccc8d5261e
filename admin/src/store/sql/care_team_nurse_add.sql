INSERT INTO care_team_nurses (patient_id, nurse_id) VALUES ($1, $2) ON CONFLICT DO NOTHING
