-- Inbound SMS security (issue #13, defects 1 and 2).
-- 1. An SMS code acknowledges only the severity it was sent for: one code per
--    (episode, physician, severity). Codes issued before this migration are bound
--    to the episode's severity at migration time.
ALTER TABLE alert_ack_codes ADD COLUMN IF NOT EXISTS severity text;
UPDATE alert_ack_codes a SET severity = COALESCE(
    (SELECT e.severity FROM alert_episodes e WHERE e.episode_id = a.episode_id), 'critical')
WHERE a.severity IS NULL;
ALTER TABLE alert_ack_codes ALTER COLUMN severity SET NOT NULL;
ALTER TABLE alert_ack_codes DROP CONSTRAINT IF EXISTS alert_ack_codes_pkey;
ALTER TABLE alert_ack_codes ADD PRIMARY KEY (episode_id, physician_id, severity);

-- 2. Attempts per sender number, shared by every alerting replica. `sender_key` is a
--    keyed hash of the number (no phone numbers in this table). `failures` counts the
--    attempts of the current window (an attempt is counted before its code is checked,
--    and the count is cleared by a success); past `max_failures` the number is locked
--    until `locked_until` (each lockout is also appended to admin_audit).
CREATE TABLE IF NOT EXISTS sms_inbound_guard (
    sender_key    text PRIMARY KEY,
    window_start  timestamptz NOT NULL,
    failures      integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    lockouts      integer NOT NULL DEFAULT 0
);
