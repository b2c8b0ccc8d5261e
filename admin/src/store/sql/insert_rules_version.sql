INSERT INTO patient_rules_versions (patient_id, version, rules, author, author_role, changed_at, reason)
VALUES ($1, $2, $3, $4, $5, clock_timestamp(), $6)
