-- Why and when an enrolment ended, and audited backfill grants (issue #12, defect 6).
-- Times are microseconds since the Unix epoch (UTC).
ALTER TABLE enrolments ADD COLUMN end_reason TEXT
    CHECK (end_reason IS NULL OR end_reason IN ('moved', 'unenrolled', 'retired'));
ALTER TABLE enrolments ADD COLUMN end_recorded_at INTEGER;

UPDATE enrolments SET
    end_reason = CASE
        WHEN EXISTS (SELECT 1 FROM devices d WHERE d.device_id = enrolments.device_id AND d.retired_at = enrolments.valid_to) THEN 'retired'
        WHEN EXISTS (SELECT 1 FROM enrolments n WHERE n.device_id = enrolments.device_id AND n.valid_from = enrolments.valid_to) THEN 'moved'
        ELSE 'unenrolled'
    END,
    end_recorded_at = valid_to
WHERE valid_to IS NOT NULL AND end_reason IS NULL;

CREATE TABLE IF NOT EXISTS backfill_grants (
    grant_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT NOT NULL REFERENCES devices (device_id),
    patient_id  TEXT NOT NULL REFERENCES patients (patient_id),
    granted_at  INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    CHECK (valid_until > granted_at)
);
CREATE INDEX IF NOT EXISTS backfill_grants_until_idx ON backfill_grants (valid_until);
