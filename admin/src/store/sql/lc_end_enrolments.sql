-- Ends the patient's open enrolments at $2 (those that started before it).
UPDATE enrolments SET valid_to = $2, end_reason = 'unenrolled', end_recorded_at = clock_timestamp()
WHERE patient_id = $1 AND valid_to IS NULL AND valid_from < $2
