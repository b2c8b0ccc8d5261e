INSERT INTO enrolments (device_id, patient_id, valid_from) VALUES ($1, $2, $3)
