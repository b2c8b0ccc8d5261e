-- Registry of patients and devices, with enrolment periods.
-- Patients are identified by a pseudonymous id only: no names, no national numbers.
CREATE TABLE IF NOT EXISTS patients (
    patient_id  text PRIMARY KEY,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'discharged')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS devices (
    device_id   text PRIMARY KEY,
    kind        text NOT NULL DEFAULT 'generic',
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

-- A device belongs to one patient at a time; valid_to NULL means "still enrolled".
CREATE TABLE IF NOT EXISTS enrolments (
    enrolment_id bigserial PRIMARY KEY,
    device_id    text NOT NULL REFERENCES devices (device_id),
    patient_id   text NOT NULL REFERENCES patients (patient_id),
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz,
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX IF NOT EXISTS enrolments_device_idx ON enrolments (device_id, valid_from);
CREATE INDEX IF NOT EXISTS enrolments_patient_idx ON enrolments (patient_id);
