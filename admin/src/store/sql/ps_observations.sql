-- Re-keys the readings to the pseudonym; the device, message and trace ids
-- (which the audit trail or the device's enrolment history could link back) are dropped.
UPDATE observations SET patient_id = $2, device_id = NULL, msg_id = NULL, trace_id = NULL WHERE patient_id = $1
