-- Ends the device's open enrolment at $2 (one that started before), recording why ($3) and when.
UPDATE enrolments SET valid_to = $2, end_reason = $3, end_recorded_at = clock_timestamp()
WHERE device_id = $1 AND valid_to IS NULL AND valid_from < $2
