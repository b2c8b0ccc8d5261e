SELECT patient_id FROM patients WHERE ($1::text[] IS NULL OR patient_id = ANY($1)) ORDER BY patient_id
