SELECT time, code, value, source, device_id, received_at, time_source, original_value, original_unit,
    msg_id, trace_id, patient_id
FROM observations WHERE patient_id IN (SELECT value FROM json_each($1)) AND time >= $2 ORDER BY patient_id, time, code
