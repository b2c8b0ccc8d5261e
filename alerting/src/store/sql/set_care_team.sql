INSERT INTO alert_care_teams (patient_id, responsible, doc, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (patient_id) DO UPDATE SET responsible = excluded.responsible, doc = excluded.doc, updated_at = excluded.updated_at
