SELECT patient_id, rules, updated_at, version FROM patient_rules WHERE updated_at >= $1 ORDER BY updated_at
