SELECT version, rules, author, author_role, changed_at, reason
FROM patient_rules_versions WHERE patient_id = $1 ORDER BY version DESC
