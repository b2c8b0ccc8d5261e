-- Monitoring periods: see the PostgreSQL migration for the meaning of every
-- column and end reason. Times are unix microseconds.
CREATE TABLE IF NOT EXISTS monitoring_periods (
    period_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id    TEXT NOT NULL REFERENCES patients (patient_id),
    program       TEXT NOT NULL,
    prescriber    TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    planned_end   INTEGER,
    consent_at    INTEGER,
    consent_by    TEXT,
    recorded_by   TEXT NOT NULL,
    recorded_at   INTEGER NOT NULL,
    ended_at      INTEGER,
    end_reason    TEXT CHECK (end_reason IS NULL OR end_reason IN
                      ('discharged', 'end_of_programme', 'deceased', 'transferred', 'other')),
    end_note      TEXT,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CHECK (planned_end IS NULL OR planned_end > started_at),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX IF NOT EXISTS monitoring_periods_one_open ON monitoring_periods (patient_id) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS monitoring_periods_patient ON monitoring_periods (patient_id, started_at);

-- Patients monitored before this migration get one open period (see PostgreSQL).
INSERT INTO monitoring_periods (patient_id, program, prescriber, started_at, recorded_by, recorded_at)
SELECT p.patient_id, 'unspecified',
       COALESCE((SELECT t.responsible FROM alert_care_teams t WHERE t.patient_id = p.patient_id), 'unspecified'),
       p.created_at, 'migration', CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM patients p
WHERE p.status = 'active'
  AND NOT EXISTS (SELECT 1 FROM monitoring_periods m WHERE m.patient_id = p.patient_id AND m.ended_at IS NULL);
