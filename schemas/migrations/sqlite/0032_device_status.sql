-- The latest status (heartbeat) of each device (see the PostgreSQL migration).
-- Times are unix microseconds.
CREATE TABLE IF NOT EXISTS device_status (
    device_id        TEXT PRIMARY KEY,
    patient_id       TEXT,
    time             INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    battery_percent  REAL CHECK (battery_percent BETWEEN 0 AND 100),
    battery_at       INTEGER,
    signal_dbm       REAL,
    signal_at        INTEGER,
    firmware         TEXT,
    firmware_at      INTEGER,
    updated_at       INTEGER NOT NULL
);
