-- Monitoring periods (French télésurveillance): a patient is included in a
-- programme by a prescribing physician, with recorded consent, for a period.
-- A patient has 0..n periods; at most one is open (ended_at NULL). A
-- readmission is a new period: history stays. `patients.status` reflects the
-- latest period ('active' while one is open, 'discharged' once it ended).
--
-- End reasons (a small closed set; anything else is 'other' with a note):
--   discharged        the physician ended the monitoring (stable, back to usual care)
--   end_of_programme  the planned period (programme duration) is over
--   deceased          the patient died
--   transferred       the patient moved to another team or facility
--   other             see end_note
CREATE TABLE IF NOT EXISTS monitoring_periods (
    period_id     bigserial PRIMARY KEY,
    patient_id    text NOT NULL REFERENCES patients (patient_id),
    program       text NOT NULL,
    prescriber    text NOT NULL,
    started_at    timestamptz NOT NULL,
    planned_end   timestamptz,
    consent_at    timestamptz,
    consent_by    text,
    recorded_by   text NOT NULL,
    recorded_at   timestamptz NOT NULL,
    ended_at      timestamptz,
    end_reason    text CHECK (end_reason IS NULL OR end_reason IN
                      ('discharged', 'end_of_programme', 'deceased', 'transferred', 'other')),
    end_note      text,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CHECK (planned_end IS NULL OR planned_end > started_at),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX IF NOT EXISTS monitoring_periods_one_open ON monitoring_periods (patient_id) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS monitoring_periods_patient ON monitoring_periods (patient_id, started_at);

-- Patients monitored before this migration get one open period from their
-- registration: programme and prescriber unknown ('unspecified', or the care
-- team's responsible physician), consent not recorded (NULL): an operator
-- completes it by discharging and re-including if the record is needed.
INSERT INTO monitoring_periods (patient_id, program, prescriber, started_at, recorded_by, recorded_at)
SELECT p.patient_id, 'unspecified',
       COALESCE((SELECT t.responsible FROM alert_care_teams t WHERE t.patient_id = p.patient_id), 'unspecified'),
       p.created_at, 'migration', now()
FROM patients p
WHERE p.status = 'active'
  AND NOT EXISTS (SELECT 1 FROM monitoring_periods m WHERE m.patient_id = p.patient_id AND m.ended_at IS NULL);
