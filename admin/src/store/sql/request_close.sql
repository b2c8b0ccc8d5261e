-- A close request for the rules worker that owns the patient.
INSERT INTO episode_closes (episode_id, patient_id, rule_id, requested_at)
SELECT episode_id, patient_id, rule_id, now() FROM alerts WHERE episode_id = $1
ON CONFLICT (episode_id) DO UPDATE SET requested_at = excluded.requested_at, applied_at = NULL
