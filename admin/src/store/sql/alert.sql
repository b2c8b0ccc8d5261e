SELECT episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, last_event_at, resolved_at, summary, evidence FROM alerts WHERE episode_id = $1
