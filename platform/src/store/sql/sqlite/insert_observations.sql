INSERT INTO observations
    (time, patient_id, code, value, unit, source, device_id, received_at, time_source, original_value, original_unit, msg_id, trace_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
