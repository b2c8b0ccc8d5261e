SELECT episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, last_event_at, resolved_at, summary, rules_version FROM alerts
WHERE ($1::text IS NULL OR patient_id = $1) AND ($2::text IS NULL OR status = $2)
AND ($3::text IS NULL OR severity = $3)
AND ($4::timestamptz IS NULL OR (opened_at, episode_id) < ($4, $5::text))
AND ($6::text[] IS NULL OR patient_id = ANY($6))
ORDER BY opened_at DESC, episode_id DESC LIMIT $7
