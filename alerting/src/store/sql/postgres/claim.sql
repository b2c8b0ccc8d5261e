-- Due rows not claimed by a live worker; rows another dispatcher holds are skipped.
UPDATE alert_outbox SET claimed_by = $1, claimed_until = $2 WHERE key IN (
    SELECT key FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= $3
    AND (claimed_until IS NULL OR claimed_until <= $3)
    ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED)
RETURNING notification, attempts
