INSERT INTO observations
    (time, patient_id, code, value, unit, source, device_id, received_at, time_source, original_value, original_unit, msg_id, trace_id)
SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::text[],
    $8::timestamptz[], $9::text[], $10::float8[], $11::text[], $12::text[], $13::text[])
ON CONFLICT DO NOTHING
