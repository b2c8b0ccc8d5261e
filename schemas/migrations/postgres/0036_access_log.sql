-- Read-access log (GDPR traceability): who read which patient's data, when,
-- through which interface. Appended on every read of a patient's data through
-- the JSON API, the FHIR API, the web workspace and the CLI; append-only.
CREATE TABLE IF NOT EXISTS access_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    actor_role  text NOT NULL,
    patient_id  text NOT NULL,
    interface   text NOT NULL CHECK (interface IN ('api', 'fhir', 'web', 'cli')),
    what        text NOT NULL
);
CREATE INDEX IF NOT EXISTS access_log_patient_idx ON access_log (patient_id, id);
CREATE OR REPLACE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'access_log is append-only'; END $$;
DROP TRIGGER IF EXISTS access_log_append_only ON access_log;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
