-- Embedded store for `vitalwatch run`. Times are microseconds since the Unix epoch (UTC).
CREATE TABLE IF NOT EXISTS patients (
    patient_id  TEXT PRIMARY KEY,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'discharged')),
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id   TEXT PRIMARY KEY,
    kind        TEXT NOT NULL DEFAULT 'generic',
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);
CREATE TABLE IF NOT EXISTS enrolments (
    enrolment_id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL REFERENCES devices (device_id),
    patient_id   TEXT NOT NULL REFERENCES patients (patient_id),
    valid_from   INTEGER NOT NULL,
    valid_to     INTEGER
);
CREATE INDEX IF NOT EXISTS enrolments_device_idx ON enrolments (device_id, valid_from);
CREATE TABLE IF NOT EXISTS observations (
    time            INTEGER NOT NULL,
    patient_id      TEXT NOT NULL,
    code            TEXT NOT NULL,
    value           REAL NOT NULL,
    unit            TEXT NOT NULL,
    source          TEXT NOT NULL,
    device_id       TEXT,
    received_at     INTEGER NOT NULL,
    time_source     TEXT NOT NULL,
    original_value  REAL NOT NULL,
    original_unit   TEXT NOT NULL,
    msg_id          TEXT,
    trace_id        TEXT,
    UNIQUE (patient_id, code, time)
);
