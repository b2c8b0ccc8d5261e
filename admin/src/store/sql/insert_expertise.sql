INSERT INTO expertise_requests (episode_id, patient_id, requested_by, requested_by_role, to_account, to_email,
    question, snapshot, created_at, link_hash, link_expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id
