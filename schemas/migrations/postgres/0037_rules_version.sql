-- The version of a patient's rules in force (issue #17): `patient_rules.version`
-- is the `patient_rules_versions.version` of the rules in `patient_rules.rules`,
-- written in the same transaction as the new version. 0 = no version recorded
-- (the program defaults apply to a patient without a row). The rules engine
-- loads it with the rules and names it in every AlertEvent (`rules_version`).
ALTER TABLE patient_rules ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 0 CHECK (version >= 0);
-- Backfill: the newest version holding exactly the rules in force, else the newest version.
UPDATE patient_rules SET version = COALESCE(
    (SELECT max(v.version) FROM patient_rules_versions v
     WHERE v.patient_id = patient_rules.patient_id AND v.rules = patient_rules.rules),
    (SELECT max(v.version) FROM patient_rules_versions v WHERE v.patient_id = patient_rules.patient_id),
    0);
-- The episode keeps the version of the rules that opened it (NULL: opened before this migration).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS rules_version integer;
