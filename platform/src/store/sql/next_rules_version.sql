SELECT COALESCE(MAX(version), 0) + 1 FROM patient_rules_versions WHERE patient_id = $1
