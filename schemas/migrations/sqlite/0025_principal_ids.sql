-- Device ids and patient ids are MQTT usernames in ONE namespace (deploy/mosquitto/acl.conf):
-- a device registered under a patient's id could publish that patient's manual entries. Refuse
-- an id the other kind already has, whoever writes (SQLite serializes writers: no race).
CREATE TRIGGER IF NOT EXISTS devices_id_not_a_patient_id BEFORE INSERT ON devices
WHEN EXISTS (SELECT 1 FROM patients WHERE patient_id = NEW.device_id)
BEGIN
    SELECT RAISE(ABORT, 'vitalwatch: principal id collision: device id is already a patient id');
END;
CREATE TRIGGER IF NOT EXISTS devices_id_update_not_a_patient_id BEFORE UPDATE OF device_id ON devices
WHEN EXISTS (SELECT 1 FROM patients WHERE patient_id = NEW.device_id)
BEGIN
    SELECT RAISE(ABORT, 'vitalwatch: principal id collision: device id is already a patient id');
END;
CREATE TRIGGER IF NOT EXISTS patients_id_not_a_device_id BEFORE INSERT ON patients
WHEN EXISTS (SELECT 1 FROM devices WHERE device_id = NEW.patient_id)
BEGIN
    SELECT RAISE(ABORT, 'vitalwatch: principal id collision: patient id is already a device id');
END;
CREATE TRIGGER IF NOT EXISTS patients_id_update_not_a_device_id BEFORE UPDATE OF patient_id ON patients
WHEN EXISTS (SELECT 1 FROM devices WHERE device_id = NEW.patient_id)
BEGIN
    SELECT RAISE(ABORT, 'vitalwatch: principal id collision: patient id is already a device id');
END;
