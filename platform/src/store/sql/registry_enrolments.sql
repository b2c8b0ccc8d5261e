SELECT device_id, patient_id, valid_from, valid_to, end_reason, end_recorded_at FROM enrolments
