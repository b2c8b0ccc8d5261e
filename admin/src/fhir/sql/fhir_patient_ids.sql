SELECT patient_id FROM patients ORDER BY patient_id
