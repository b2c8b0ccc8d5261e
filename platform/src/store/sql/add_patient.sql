INSERT INTO patients (patient_id, created_at) VALUES ($1, now()) ON CONFLICT (patient_id) DO NOTHING
