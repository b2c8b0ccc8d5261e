-- GDPR erasure and pseudonymisation: see the PostgreSQL migration.
CREATE TABLE IF NOT EXISTS patient_erasures (
    erasure_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id   TEXT NOT NULL UNIQUE,
    mode         TEXT NOT NULL CHECK (mode IN ('erase', 'pseudonymise')),
    reason       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    actor_role   TEXT NOT NULL,
    at           INTEGER NOT NULL,
    counts       TEXT NOT NULL,
    remaining    TEXT NOT NULL
);

CREATE TRIGGER IF NOT EXISTS patients_id_not_erased BEFORE INSERT ON patients
WHEN EXISTS (SELECT 1 FROM patient_erasures WHERE patient_id = NEW.patient_id)
BEGIN
    SELECT RAISE(ABORT, 'vitalwatch: patient id was erased: ids are never reused');
END;
