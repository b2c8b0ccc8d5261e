SELECT id, at, actor, actor_role, action, target_kind, target_id, patient_id, details
FROM admin_audit
WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2)
AND ($3 IS NULL OR target_id = $3) AND ($4 IS NULL OR patient_id = $4)
AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at < $6) AND ($7 IS NULL OR id < $7)
AND ($8 IS NULL OR patient_id IN (SELECT value FROM json_each($8)) OR actor = $9)
ORDER BY id DESC LIMIT $10
