-- Read-access log (see the PostgreSQL migration). Times are unix microseconds.
CREATE TABLE IF NOT EXISTS access_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    patient_id  TEXT NOT NULL,
    interface   TEXT NOT NULL CHECK (interface IN ('api', 'fhir', 'web', 'cli')),
    what        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS access_log_patient_idx ON access_log (patient_id, id);
CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END;
