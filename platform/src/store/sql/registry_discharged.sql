SELECT patient_id FROM patients WHERE status = 'discharged'
