SELECT episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, last_event_at,
    resolved_at, summary, evidence, last_event_id
FROM alerts WHERE CAST($1 AS TEXT) IS NULL OR patient_id = $1 ORDER BY opened_at, episode_id
