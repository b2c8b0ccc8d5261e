SELECT 1 FROM enrolments WHERE device_id = $1 AND patient_id = $2 AND end_reason IS NOT NULL
