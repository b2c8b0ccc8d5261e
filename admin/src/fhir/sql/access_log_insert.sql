INSERT INTO access_log (at, actor, actor_role, patient_id, interface, what) VALUES ($1, $2, $3, $4, $5, $6)
