-- Every version of a patient's rules (see the PostgreSQL migration). Times are unix microseconds.
CREATE TABLE IF NOT EXISTS patient_rules_versions (
    patient_id   TEXT NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    rules        TEXT NOT NULL,
    author       TEXT NOT NULL,
    author_role  TEXT NOT NULL,
    changed_at   INTEGER NOT NULL,
    reason       TEXT,
    PRIMARY KEY (patient_id, version)
);
INSERT INTO patient_rules_versions (patient_id, version, rules, author, author_role, changed_at, reason)
SELECT patient_id, 1, rules, 'system', 'system', updated_at, 'rules in force when versioning began'
FROM patient_rules
WHERE true
ON CONFLICT (patient_id, version) DO NOTHING;
