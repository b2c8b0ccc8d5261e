UPDATE expertise_requests SET notified_at = $2 WHERE id = $1
