-- Answers a request once: a second answer (or a second use of the link) changes nothing.
-- $5: when the link was used (NULL for an answer in the app).
UPDATE expertise_requests SET answer = $2, answered_by = $3, answered_at = $4, link_used_at = $5
WHERE id = $1 AND answered_at IS NULL
