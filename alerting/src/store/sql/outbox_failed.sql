UPDATE alert_outbox SET status = 'failed', attempts = $2, last_error = $3,
    claimed_by = NULL, claimed_until = NULL
WHERE key = $1 AND status = 'pending'
