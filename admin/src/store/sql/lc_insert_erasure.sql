INSERT INTO patient_erasures (patient_id, mode, reason, actor, actor_role, at, counts, remaining)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING erasure_id
