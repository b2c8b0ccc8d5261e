SELECT device_id, patient_id, time, received_at, battery_percent, signal_dbm, firmware
FROM device_status WHERE device_id IN (SELECT value FROM json_each($1)) ORDER BY device_id
