INSERT INTO patient_rules (patient_id, rules, updated_at, version) VALUES ($1, $2, clock_timestamp(), $3)
ON CONFLICT (patient_id) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at, version = excluded.version
