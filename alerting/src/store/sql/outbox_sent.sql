UPDATE alert_outbox SET status = 'sent', sent_at = $2, provider_message_id = $3, attempts = $4,
    claimed_by = NULL, claimed_until = NULL, last_error = NULL
WHERE key = $1 AND status = 'pending'
