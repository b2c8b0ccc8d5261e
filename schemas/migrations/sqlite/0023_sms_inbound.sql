-- Inbound SMS security (issue #13, defects 1 and 2). Times are microseconds since the
-- Unix epoch (UTC). See the PostgreSQL migration for the meaning of each column.
CREATE TABLE alert_ack_codes_0023 (
    episode_id    TEXT NOT NULL,
    physician_id  TEXT NOT NULL,
    code          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    PRIMARY KEY (episode_id, physician_id, severity)
);
INSERT INTO alert_ack_codes_0023 (episode_id, physician_id, code, severity)
SELECT a.episode_id, a.physician_id, a.code,
       COALESCE((SELECT e.severity FROM alert_episodes e WHERE e.episode_id = a.episode_id), 'critical')
FROM alert_ack_codes a;
DROP TABLE alert_ack_codes;
ALTER TABLE alert_ack_codes_0023 RENAME TO alert_ack_codes;
CREATE INDEX IF NOT EXISTS alert_ack_codes_lookup ON alert_ack_codes (physician_id, code);

CREATE TABLE IF NOT EXISTS sms_inbound_guard (
    sender_key    TEXT PRIMARY KEY,
    window_start  INTEGER NOT NULL,
    failures      INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,
    lockouts      INTEGER NOT NULL DEFAULT 0
);
