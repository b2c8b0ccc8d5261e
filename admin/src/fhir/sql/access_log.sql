SELECT id, at, actor, actor_role, patient_id, interface, what FROM access_log
WHERE patient_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3
