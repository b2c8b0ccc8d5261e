-- Enrolments scheduled to start at or after the discharge never begin.
DELETE FROM enrolments WHERE patient_id = $1 AND valid_from >= $2 AND (valid_to IS NULL OR valid_to > $2)
