UPDATE alert_outbox SET attempts = $2, next_attempt_at = $3, last_error = $4,
    claimed_by = NULL, claimed_until = NULL
WHERE key = $1 AND status = 'pending'
