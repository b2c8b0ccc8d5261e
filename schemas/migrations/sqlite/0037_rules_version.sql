-- The version of a patient's rules in force (see the PostgreSQL migration).
ALTER TABLE patient_rules ADD COLUMN version INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0);
UPDATE patient_rules SET version = COALESCE(
    (SELECT max(v.version) FROM patient_rules_versions v
     WHERE v.patient_id = patient_rules.patient_id AND v.rules = patient_rules.rules),
    (SELECT max(v.version) FROM patient_rules_versions v WHERE v.patient_id = patient_rules.patient_id),
    0);
ALTER TABLE alerts ADD COLUMN rules_version INTEGER;
