-- One row per observation component (blood pressure gives systolic, diastolic and pulse rows).
CREATE TABLE IF NOT EXISTS observations (
    time            timestamptz      NOT NULL,
    patient_id      text             NOT NULL,
    code            text             NOT NULL,
    value           double precision NOT NULL,
    unit            text             NOT NULL,
    source          text             NOT NULL CHECK (source IN ('device', 'manual')),
    device_id       text,
    received_at     timestamptz      NOT NULL,
    time_source     text             NOT NULL CHECK (time_source IN ('device', 'app', 'received')),
    original_value  double precision NOT NULL,
    original_unit   text             NOT NULL,
    msg_id          text,
    trace_id        text,
    -- The same reading can never be stored twice (redelivery, replays, retries).
    CONSTRAINT observations_unique_reading UNIQUE (patient_id, code, time)
);
-- The unique key's index also serves "a patient's code over time" queries
-- (btree scans both ways): no second index to maintain on every insert.
