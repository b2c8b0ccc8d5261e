DELETE FROM patient_rules_versions WHERE patient_id = $1
