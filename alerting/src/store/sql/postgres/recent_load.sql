-- Pages sent to each of $1 since $2 (cancelled ones do not count).
SELECT recipient, count(*) FROM alert_outbox
WHERE recipient = ANY($1) AND created_at > $2 AND status <> 'cancelled' GROUP BY recipient
