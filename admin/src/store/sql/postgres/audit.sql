SELECT id, at, actor, actor_role, action, target_kind, target_id, patient_id, details
FROM admin_audit
WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2)
AND ($3::text IS NULL OR target_id = $3) AND ($4::text IS NULL OR patient_id = $4)
AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6)
AND ($7::bigint IS NULL OR id < $7)
AND ($8::text[] IS NULL OR patient_id = ANY($8) OR actor = $9::text)
ORDER BY id DESC LIMIT $10
