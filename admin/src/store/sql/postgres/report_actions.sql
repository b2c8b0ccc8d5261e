-- Actions taken in the month, per patient: one branch per table.
SELECT a.patient_id, 'ack', '', count(*)::bigint FROM alert_acknowledgments k JOIN alerts a ON a.episode_id = k.episode_id
WHERE k.at >= $1 AND k.at < $2 AND ($3::text[] IS NULL OR a.patient_id = ANY($3)) GROUP BY a.patient_id
UNION ALL
SELECT a.patient_id, 'snooze', '', count(*)::bigint FROM alert_audit u JOIN alerts a ON a.episode_id = u.episode_id
WHERE u.entry_type = 'snoozed' AND u.at >= $1 AND u.at < $2 AND ($3::text[] IS NULL OR a.patient_id = ANY($3))
GROUP BY a.patient_id
UNION ALL
SELECT patient_id, 'close', outcome, count(*)::bigint FROM episode_notes
WHERE kind = 'close' AND at >= $1 AND at < $2 AND ($3::text[] IS NULL OR patient_id = ANY($3)) GROUP BY patient_id, outcome
UNION ALL
SELECT patient_id, 'close_request', '', count(*)::bigint FROM episode_closes
WHERE requested_at >= $1 AND requested_at < $2 AND ($3::text[] IS NULL OR patient_id = ANY($3)) GROUP BY patient_id
UNION ALL
SELECT patient_id, 'note', '', count(*)::bigint FROM episode_notes
WHERE kind = 'note' AND at >= $1 AND at < $2 AND ($3::text[] IS NULL OR patient_id = ANY($3)) GROUP BY patient_id
UNION ALL
SELECT patient_id, 'expertise', '', count(*)::bigint FROM expertise_requests
WHERE created_at >= $1 AND created_at < $2 AND ($3::text[] IS NULL OR patient_id = ANY($3)) GROUP BY patient_id
UNION ALL
SELECT patient_id, 'rules_change', '', count(*)::bigint FROM patient_rules_versions
WHERE author_role <> 'system' AND changed_at >= $1 AND changed_at < $2 AND ($3::text[] IS NULL OR patient_id = ANY($3))
GROUP BY patient_id
