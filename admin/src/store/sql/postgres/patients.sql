SELECT patient_id, status, created_at FROM patients
WHERE ($1::text IS NULL OR patient_id > $1) AND ($2::text[] IS NULL OR patient_id = ANY($2))
ORDER BY patient_id LIMIT $3
