-- The episode row of a new event: a later event updates it; the severity of a
-- resolved or closed episode stays the one it had while open. `rules_version`
-- is the version of the rules that opened the episode: a later event (whose
-- evidence names its own version) leaves it.
INSERT INTO alerts (episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at,
    last_event_at, resolved_at, summary, evidence, last_event_id, rules_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (episode_id) DO UPDATE SET
    severity = CASE WHEN excluded.status = 'open' THEN excluded.severity ELSE alerts.severity END,
    status = excluded.status, last_event_at = excluded.last_event_at, resolved_at = excluded.resolved_at,
    summary = excluded.summary, evidence = excluded.evidence, last_event_id = excluded.last_event_id
