SELECT device_id, patient_id, time, received_at, battery_percent, signal_dbm, firmware
FROM device_status WHERE device_id = ANY($1) ORDER BY device_id
