SELECT count(*) FROM alert_outbox WHERE status = 'pending' AND attempts > 0
