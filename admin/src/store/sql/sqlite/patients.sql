SELECT patient_id, status, created_at FROM patients
WHERE ($1 IS NULL OR patient_id > $1) AND ($2 IS NULL OR patient_id IN (SELECT value FROM json_each($2)))
ORDER BY patient_id LIMIT $3
