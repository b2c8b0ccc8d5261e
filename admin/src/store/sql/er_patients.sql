DELETE FROM patients WHERE patient_id = $1
