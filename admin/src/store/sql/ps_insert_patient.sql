INSERT INTO patients (patient_id, status, created_at) VALUES ($1, 'discharged', now())
