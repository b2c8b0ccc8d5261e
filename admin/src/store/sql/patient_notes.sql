SELECT id, episode_id, patient_id, kind, outcome, body, author, author_role, at FROM episode_notes
WHERE patient_id = $1 AND id < coalesce($2, 9223372036854775807) ORDER BY id DESC LIMIT $3
