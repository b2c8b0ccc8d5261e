SELECT time, patient_id, code, value, unit, source, device_id FROM observations
WHERE patient_id = $1 ORDER BY time, code LIMIT $2
