SELECT patient_id, rules, updated_at, version FROM patient_rules WHERE patient_id = ANY($1)
