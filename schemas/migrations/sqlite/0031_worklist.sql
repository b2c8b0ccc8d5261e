-- Clinician workspace (issue #16): the worklist's indexes, episode notes and
-- close outcomes (clinical data: kept here, never in logs or the admin audit,
-- which records only the note id), and tele-expertise requests. Times are
-- unix microseconds.

CREATE INDEX IF NOT EXISTS alerts_worklist ON alerts (
    (CASE severity WHEN 'critical' THEN 5 WHEN 'high' THEN 4 WHEN 'medium' THEN 3 WHEN 'low' THEN 2 ELSE 1 END) DESC,
    opened_at, episode_id) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS alerts_open_patient ON alerts (patient_id) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS alert_acknowledgments_episode ON alert_acknowledgments (episode_id, severity);

CREATE TABLE IF NOT EXISTS episode_notes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id   TEXT NOT NULL,
    patient_id   TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('note', 'close')),
    outcome      TEXT CHECK (outcome IN ('patient_called', 'treatment_adjusted', 'consultation_scheduled',
                                         'sent_to_emergency', 'no_action_needed')),
    body         TEXT NOT NULL,
    author       TEXT NOT NULL,
    author_role  TEXT NOT NULL,
    at           INTEGER NOT NULL,
    CHECK ((kind = 'close') = (outcome IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS episode_notes_episode ON episode_notes (episode_id, id);
CREATE INDEX IF NOT EXISTS episode_notes_patient ON episode_notes (patient_id, id);

CREATE TABLE IF NOT EXISTS expertise_requests (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id         TEXT NOT NULL,
    patient_id         TEXT NOT NULL,
    requested_by       TEXT NOT NULL,
    requested_by_role  TEXT NOT NULL,
    to_account         TEXT,
    to_email           TEXT,
    question           TEXT NOT NULL,
    snapshot           TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    link_hash          TEXT UNIQUE,
    link_expires_at    INTEGER,
    link_used_at       INTEGER,
    answer             TEXT,
    answered_by        TEXT,
    answered_at        INTEGER,
    notified_at        INTEGER,
    CHECK ((to_account IS NULL) <> (to_email IS NULL)),
    CHECK ((to_email IS NULL) = (link_hash IS NULL))
);
CREATE INDEX IF NOT EXISTS expertise_requests_episode ON expertise_requests (episode_id, id);
CREATE INDEX IF NOT EXISTS expertise_requests_inbox ON expertise_requests (to_account, id) WHERE to_account IS NOT NULL;
