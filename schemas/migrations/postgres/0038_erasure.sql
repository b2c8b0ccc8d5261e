-- GDPR erasure and pseudonymisation (art. 17): one row per erased patient id,
-- who asked, when, why, how (mode) and how many rows each table lost. The row
-- is also the tombstone of the id: a trigger refuses to register the same
-- patient id again (an id is never silently reused for someone else).
-- For a pseudonymisation the pseudonym is NOT recorded (the link is removed).
CREATE TABLE IF NOT EXISTS patient_erasures (
    erasure_id   bigserial PRIMARY KEY,
    patient_id   text NOT NULL UNIQUE,
    mode         text NOT NULL CHECK (mode IN ('erase', 'pseudonymise')),
    reason       text NOT NULL,
    actor        text NOT NULL,
    actor_role   text NOT NULL,
    at           timestamptz NOT NULL,
    counts       text NOT NULL,
    remaining    text NOT NULL
);

CREATE OR REPLACE FUNCTION vitalwatch_patient_not_erased() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM patient_erasures WHERE patient_id = NEW.patient_id) THEN
        RAISE EXCEPTION 'vitalwatch: patient id was erased: ids are never reused';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS patients_id_not_erased ON patients;
CREATE TRIGGER patients_id_not_erased BEFORE INSERT OR UPDATE OF patient_id ON patients
    FOR EACH ROW EXECUTE FUNCTION vitalwatch_patient_not_erased();
