-- Why and when an enrolment ended, and audited backfill grants (issue #12, defect 6).
-- A device's reading time is what the device says: once an enrolment's end is
-- recorded (moved to another patient, unenrolled, retired), ingest refuses
-- readings for it even if dated inside it, unless a backfill grant is open.
ALTER TABLE enrolments ADD COLUMN IF NOT EXISTS end_reason text
    CHECK (end_reason IS NULL OR end_reason IN ('moved', 'unenrolled', 'retired'));
ALTER TABLE enrolments ADD COLUMN IF NOT EXISTS end_recorded_at timestamptz;

-- Enrolments ended before this migration: the reason from the registry, the
-- end itself as the time it was recorded.
UPDATE enrolments e SET
    end_reason = CASE
        WHEN EXISTS (SELECT 1 FROM devices d WHERE d.device_id = e.device_id AND d.retired_at = e.valid_to) THEN 'retired'
        WHEN EXISTS (SELECT 1 FROM enrolments n WHERE n.device_id = e.device_id AND n.valid_from = e.valid_to) THEN 'moved'
        ELSE 'unenrolled'
    END,
    end_recorded_at = e.valid_to
WHERE e.valid_to IS NOT NULL AND e.end_reason IS NULL;

-- A grant lets a device file readings of its ended enrolment to a patient
-- until valid_until (wall clock). Who granted it and why is in admin_audit
-- (action device.backfill).
CREATE TABLE IF NOT EXISTS backfill_grants (
    grant_id    bigserial PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (device_id),
    patient_id  text NOT NULL REFERENCES patients (patient_id),
    granted_at  timestamptz NOT NULL,
    valid_until timestamptz NOT NULL,
    reason      text NOT NULL,
    CHECK (valid_until > granted_at)
);
CREATE INDEX IF NOT EXISTS backfill_grants_until_idx ON backfill_grants (valid_until);
