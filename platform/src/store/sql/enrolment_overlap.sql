SELECT 1 FROM enrolments WHERE device_id = $1 AND (valid_to IS NULL OR valid_to > $2)
