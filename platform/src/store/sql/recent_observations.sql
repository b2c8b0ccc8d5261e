SELECT time, code, value, source, device_id, received_at, time_source, original_value, original_unit,
    msg_id, trace_id
FROM observations WHERE patient_id = $1 AND time >= $2 ORDER BY time, code
