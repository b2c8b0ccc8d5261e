INSERT INTO patient_rules_versions (patient_id, version, rules, author, author_role, changed_at, reason)
VALUES ($1, $2, $3, 'system', 'system', clock_timestamp(), 'rules set outside the admin service')
