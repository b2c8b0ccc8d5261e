INSERT INTO device_status (device_id, patient_id, time, received_at, battery_percent, signal_dbm, firmware, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, clock_timestamp())
ON CONFLICT (device_id) DO UPDATE SET
    patient_id = excluded.patient_id,
    time = excluded.time,
    received_at = excluded.received_at,
    battery_percent = COALESCE(excluded.battery_percent, device_status.battery_percent),
    signal_dbm = COALESCE(excluded.signal_dbm, device_status.signal_dbm),
    firmware = COALESCE(excluded.firmware, device_status.firmware),
    updated_at = excluded.updated_at
WHERE excluded.time >= device_status.time
