UPDATE alert_outbox SET status = 'cancelled', last_error = $2, claimed_by = NULL, claimed_until = NULL
WHERE key = $1 AND status = 'pending'
