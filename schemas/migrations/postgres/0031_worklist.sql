-- Clinician workspace (issue #16): the worklist's indexes, episode notes and
-- close outcomes (clinical data: kept here, never in logs or the admin audit,
-- which records only the note id), and tele-expertise requests.

-- Severity rank (critical 5 ... info 1): the worklist's order, severity then age.
CREATE INDEX IF NOT EXISTS alerts_worklist ON alerts (
    (CASE severity WHEN 'critical' THEN 5 WHEN 'high' THEN 4 WHEN 'medium' THEN 3 WHEN 'low' THEN 2 ELSE 1 END) DESC,
    opened_at, episode_id) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS alerts_open_patient ON alerts (patient_id) WHERE status = 'open';
-- "Acknowledged at the current severity?" per worklist row.
CREATE INDEX IF NOT EXISTS alert_acknowledgments_episode ON alert_acknowledgments (episode_id, severity);

-- A note on an episode, or the outcome and note of its close.
CREATE TABLE IF NOT EXISTS episode_notes (
    id           bigserial PRIMARY KEY,
    episode_id   text NOT NULL,
    patient_id   text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('note', 'close')),
    outcome      text CHECK (outcome IN ('patient_called', 'treatment_adjusted', 'consultation_scheduled',
                                         'sent_to_emergency', 'no_action_needed')),
    body         text NOT NULL,
    author       text NOT NULL,
    author_role  text NOT NULL,
    at           timestamptz NOT NULL,
    CHECK ((kind = 'close') = (outcome IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS episode_notes_episode ON episode_notes (episode_id, id);
CREATE INDEX IF NOT EXISTS episode_notes_patient ON episode_notes (patient_id, id);

-- A tele-expertise request: to a specialist account or to an email address
-- (then a single-use link: only the SHA-256 of its token is stored).
CREATE TABLE IF NOT EXISTS expertise_requests (
    id                 bigserial PRIMARY KEY,
    episode_id         text NOT NULL,
    patient_id         text NOT NULL,
    requested_by       text NOT NULL,
    requested_by_role  text NOT NULL,
    to_account         text,
    to_email           text,
    question           text NOT NULL,
    snapshot           jsonb NOT NULL,
    created_at         timestamptz NOT NULL,
    link_hash          text UNIQUE,
    link_expires_at    timestamptz,
    link_used_at       timestamptz,
    answer             text,
    answered_by        text,
    answered_at        timestamptz,
    notified_at        timestamptz,
    CHECK ((to_account IS NULL) <> (to_email IS NULL)),
    CHECK ((to_email IS NULL) = (link_hash IS NULL))
);
CREATE INDEX IF NOT EXISTS expertise_requests_episode ON expertise_requests (episode_id, id);
CREATE INDEX IF NOT EXISTS expertise_requests_inbox ON expertise_requests (to_account, id) WHERE to_account IS NOT NULL;
