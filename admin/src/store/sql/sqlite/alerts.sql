SELECT episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, last_event_at, resolved_at, summary, rules_version FROM alerts
WHERE ($1 IS NULL OR patient_id = $1) AND ($2 IS NULL OR status = $2)
AND ($3 IS NULL OR severity = $3)
AND ($4 IS NULL OR (opened_at, episode_id) < ($4, $5))
AND ($6 IS NULL OR patient_id IN (SELECT value FROM json_each($6)))
ORDER BY opened_at DESC, episode_id DESC LIMIT $7
