SELECT id, episode_id, patient_id, kind, outcome, body, author, author_role, at FROM episode_notes
WHERE episode_id = $1 ORDER BY id
