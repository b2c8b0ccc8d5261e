SELECT a.id, a.at, a.episode_id, e.patient_id, a.entry_type, a.record
FROM alert_audit a LEFT JOIN alert_episodes e ON e.episode_id = a.episode_id
WHERE ($1::text IS NULL OR a.episode_id = $1) AND ($2::text IS NULL OR e.patient_id = $2)
AND ($3::text IS NULL OR a.entry_type = $3) AND ($4::bigint IS NULL OR a.id < $4)
AND ($5::text[] IS NULL OR e.patient_id = ANY($5))
ORDER BY a.id DESC LIMIT $6
