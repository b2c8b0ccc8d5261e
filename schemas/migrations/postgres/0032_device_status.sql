-- The latest status (heartbeat) of each device: battery, signal, firmware,
-- when it was last heard. Written by the persist role from the device-status
-- topic (one row per device, upserted; the newest status time wins, and a
-- status without battery, signal or firmware keeps the previous values).
CREATE TABLE IF NOT EXISTS device_status (
    device_id        text PRIMARY KEY,
    -- The patient the device was enrolled to when the status was received (NULL if none).
    patient_id       text,
    -- Status time (the device's, capped at its receive time).
    time             timestamptz NOT NULL,
    received_at      timestamptz NOT NULL,
    battery_percent  double precision CHECK (battery_percent BETWEEN 0 AND 100),
    signal_dbm       double precision,
    firmware         text,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
