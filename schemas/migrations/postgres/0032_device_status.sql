-- The latest status (heartbeat) of each device: battery, signal, firmware,
-- when it was last heard. Written by the persist role from the device-status
-- topic (one row per device, upserted). Order-independent: `time` is the newest
-- status's; battery, signal and firmware are each the newest status's that
-- carried one (`*_at`), whatever order the statuses arrive in.
CREATE TABLE IF NOT EXISTS device_status (
    device_id        text PRIMARY KEY,
    -- The patient the device was enrolled to when the status was received (NULL if none).
    patient_id       text,
    -- Status time (the device's, capped at its receive time).
    time             timestamptz NOT NULL,
    received_at      timestamptz NOT NULL,
    battery_percent  double precision CHECK (battery_percent BETWEEN 0 AND 100),
    battery_at       timestamptz,
    signal_dbm       double precision,
    signal_at        timestamptz,
    firmware         text,
    firmware_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
