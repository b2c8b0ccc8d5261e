SELECT status FROM patients WHERE patient_id = $1
