-- Episodes opened in the month: severity, when raised (first event detected),
-- first acknowledgment.
SELECT a.patient_id, a.severity, a.opened_at,
    (SELECT min(e.detected_at) FROM alert_events e WHERE e.episode_id = a.episode_id),
    (SELECT min(k.at) FROM alert_acknowledgments k WHERE k.episode_id = a.episode_id)
FROM alerts a
WHERE a.opened_at >= $1 AND a.opened_at < $2 AND ($3::text[] IS NULL OR a.patient_id = ANY($3))
