-- A care team of 5,000 patients for the page-load benchmark (web/benches/pages.rs):
-- one responsible physician (dr-bench), 90 days of daily blood pressure, heart rate
-- and weight per patient (1.35 M readings), 600 open episodes with pages sent.
INSERT INTO patients (patient_id) SELECT 'pb-' || lpad(i::text, 5, '0') FROM generate_series(1, 5000) i;
INSERT INTO alert_care_teams (patient_id, responsible, doc)
SELECT 'pb-' || lpad(i::text, 5, '0'), 'dr-bench',
       jsonb_build_object('patient_id', 'pb-' || lpad(i::text, 5, '0'), 'responsible', 'dr-bench', 'deputies', '[]'::jsonb)
FROM generate_series(1, 5000) i;
INSERT INTO observations (time, patient_id, code, value, unit, source, device_id, received_at, time_source, original_value, original_unit)
SELECT t, p, c.code, c.base + 8 * sin(extract(epoch FROM t) / 86400.0 + i), c.unit, 'device', NULL, t, 'device', c.base, c.unit
FROM generate_series(1, 5000) i
CROSS JOIN LATERAL (SELECT 'pb-' || lpad(i::text, 5, '0') AS p) pp
CROSS JOIN (VALUES ('8480-6', 135.0, 'mm[Hg]'), ('8867-4', 72.0, '/min'), ('29463-7', 81.0, 'kg')) AS c(code, base, unit)
CROSS JOIN generate_series(now() - interval '90 days', now() - interval '1 hour', interval '1 day') t;
INSERT INTO alerts (episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, last_event_at, summary, evidence, last_event_id)
SELECT 'ep-bench-' || i, 'pb-' || lpad((i * 7)::text, 5, '0'), 'threshold:8480-6:high', 'threshold', 'hypertension', '8480-6',
       (ARRAY['critical', 'high', 'medium', 'low'])[1 + i % 4], 'open', now() - (i || ' minutes')::interval, now() - (i || ' minutes')::interval,
       'Systolic blood pressure above the patient''s threshold',
       jsonb_build_object('value', 182, 'unit', 'mm[Hg]', 'code', '8480-6', 'threshold', 160), 'ev-bench-' || i
FROM generate_series(1, 600) i;
INSERT INTO alert_episodes (episode_id, patient_id, severity, next_wakeup)
SELECT 'ep-bench-' || i, 'pb-' || lpad((i * 7)::text, 5, '0'), (ARRAY['critical', 'high', 'medium', 'low'])[1 + i % 4], now() + interval '10 minutes'
FROM generate_series(1, 600) i;
INSERT INTO alert_outbox (key, episode_id, recipient, channel, notification, status, attempts, next_attempt_at, created_at, sent_at)
SELECT 'ep-bench-' || i || ':0:dr-bench:' || ch, 'ep-bench-' || i, 'dr-bench', ch, '{}'::jsonb, 'sent', 1,
       now() - (i || ' minutes')::interval, now() - (i || ' minutes')::interval, now() - (i || ' minutes')::interval
FROM generate_series(1, 600) i CROSS JOIN (VALUES ('email'), ('sms')) AS c(ch);
ANALYZE;
