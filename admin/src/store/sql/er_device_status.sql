DELETE FROM device_status WHERE patient_id = $1
