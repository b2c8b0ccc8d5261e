INSERT INTO episode_notes (episode_id, patient_id, kind, outcome, body, author, author_role, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id
