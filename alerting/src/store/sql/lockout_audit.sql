INSERT INTO admin_audit (at, actor, actor_role, action, target_kind, target_id, patient_id, details)
VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)
