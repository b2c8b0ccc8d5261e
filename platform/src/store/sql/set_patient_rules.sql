INSERT INTO patient_rules (patient_id, rules, updated_at) VALUES ($1, $2, clock_timestamp())
ON CONFLICT (patient_id) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at
