SELECT time, code, value, unit, source, device_id, received_at, time_source, original_value, original_unit
FROM observations WHERE patient_id = $1 AND time = $2 ORDER BY code
