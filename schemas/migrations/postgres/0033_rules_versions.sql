-- Every version of a patient's rules (`patient_rules` keeps the current one,
-- which the rules engine reads). A change through the admin service writes
-- the new version with who made it, when and why; earlier versions stay.
CREATE TABLE IF NOT EXISTS patient_rules_versions (
    patient_id   text NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    rules        text NOT NULL,
    author       text NOT NULL,
    author_role  text NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason       text,
    PRIMARY KEY (patient_id, version)
);
-- The rules in force when versioning began are version 1.
INSERT INTO patient_rules_versions (patient_id, version, rules, author, author_role, changed_at, reason)
SELECT patient_id, 1, rules, 'system', 'system', updated_at, 'rules in force when versioning began'
FROM patient_rules
ON CONFLICT (patient_id, version) DO NOTHING;
