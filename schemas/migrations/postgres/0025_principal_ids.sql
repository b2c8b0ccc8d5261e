-- Device ids and patient ids are MQTT usernames in ONE namespace: the shipped Mosquitto ACLs
-- (deploy/mosquitto/acl.conf) grant by pattern `vitalwatch/v1/devices/%u/...` and
-- `vitalwatch/v1/patients/%u/...` to every user, so a device registered under a patient's id could
-- publish that patient's manual entries. Refuse an id the other kind already has, whoever writes
-- (CLI, admin API, a script). The advisory lock (one per id, key space 25) serializes concurrent
-- registrations of the same id, so neither misses the other's row once committed. Existing
-- collisions (none expected) are not touched: find them with
--   SELECT device_id FROM devices JOIN patients ON patient_id = device_id;
CREATE OR REPLACE FUNCTION vw_refuse_colliding_principal_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'devices' THEN
        PERFORM pg_advisory_xact_lock(25, hashtext(NEW.device_id));
        IF EXISTS (SELECT 1 FROM patients WHERE patient_id = NEW.device_id) THEN
            RAISE EXCEPTION 'vitalwatch: principal id collision: device id is already a patient id'
                USING ERRCODE = 'unique_violation';
        END IF;
    ELSE
        PERFORM pg_advisory_xact_lock(25, hashtext(NEW.patient_id));
        IF EXISTS (SELECT 1 FROM devices WHERE device_id = NEW.patient_id) THEN
            RAISE EXCEPTION 'vitalwatch: principal id collision: patient id is already a device id'
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS devices_id_not_a_patient_id ON devices;
CREATE TRIGGER devices_id_not_a_patient_id BEFORE INSERT OR UPDATE OF device_id ON devices
    FOR EACH ROW EXECUTE FUNCTION vw_refuse_colliding_principal_id();
DROP TRIGGER IF EXISTS patients_id_not_a_device_id ON patients;
CREATE TRIGGER patients_id_not_a_device_id BEFORE INSERT OR UPDATE OF patient_id ON patients
    FOR EACH ROW EXECUTE FUNCTION vw_refuse_colliding_principal_id();
