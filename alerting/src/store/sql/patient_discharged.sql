SELECT 1 FROM patients WHERE patient_id = $1 AND status = 'discharged'
