-- The newest status gives `time`, `received_at` and `patient_id`; battery,
-- signal and firmware are each the newest status's that carried one, so the
-- row does not depend on the order statuses arrive in.
INSERT INTO device_status (device_id, patient_id, time, received_at, battery_percent, battery_at, signal_dbm,
    signal_at, firmware, firmware_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp())
ON CONFLICT (device_id) DO UPDATE SET
    patient_id = CASE WHEN excluded.time >= device_status.time THEN excluded.patient_id ELSE device_status.patient_id END,
    received_at = CASE WHEN excluded.time >= device_status.time THEN excluded.received_at ELSE device_status.received_at END,
    time = CASE WHEN excluded.time >= device_status.time THEN excluded.time ELSE device_status.time END,
    battery_percent = CASE WHEN excluded.battery_at IS NOT NULL
        AND (device_status.battery_at IS NULL OR excluded.battery_at >= device_status.battery_at)
        THEN excluded.battery_percent ELSE device_status.battery_percent END,
    battery_at = CASE WHEN excluded.battery_at IS NOT NULL
        AND (device_status.battery_at IS NULL OR excluded.battery_at >= device_status.battery_at)
        THEN excluded.battery_at ELSE device_status.battery_at END,
    signal_dbm = CASE WHEN excluded.signal_at IS NOT NULL
        AND (device_status.signal_at IS NULL OR excluded.signal_at >= device_status.signal_at)
        THEN excluded.signal_dbm ELSE device_status.signal_dbm END,
    signal_at = CASE WHEN excluded.signal_at IS NOT NULL
        AND (device_status.signal_at IS NULL OR excluded.signal_at >= device_status.signal_at)
        THEN excluded.signal_at ELSE device_status.signal_at END,
    firmware = CASE WHEN excluded.firmware_at IS NOT NULL
        AND (device_status.firmware_at IS NULL OR excluded.firmware_at >= device_status.firmware_at)
        THEN excluded.firmware ELSE device_status.firmware END,
    firmware_at = CASE WHEN excluded.firmware_at IS NOT NULL
        AND (device_status.firmware_at IS NULL OR excluded.firmware_at >= device_status.firmware_at)
        THEN excluded.firmware_at ELSE device_status.firmware_at END,
    updated_at = excluded.updated_at
