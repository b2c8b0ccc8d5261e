SELECT patient_id, status, created_at FROM patients WHERE patient_id = $1
