SELECT id, episode_id, patient_id, requested_by, requested_by_role, to_account, to_email, question, created_at,
    link_expires_at, link_used_at, answer, answered_by, answered_at, notified_at
FROM expertise_requests WHERE to_account = $1 AND id < coalesce($2, 9223372036854775807) ORDER BY id DESC LIMIT $3
