SELECT patient_id FROM patients WHERE ($1 IS NULL OR patient_id IN (SELECT value FROM json_each($1))) ORDER BY patient_id
