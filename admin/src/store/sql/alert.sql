SELECT episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, last_event_at, resolved_at, summary, rules_version, evidence FROM alerts WHERE episode_id = $1
