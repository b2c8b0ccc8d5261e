-- Notifications not sent yet are cancelled (kept as a record, never sent).
UPDATE alert_outbox SET status = 'cancelled'
WHERE status = 'pending' AND episode_id IN (SELECT episode_id FROM alert_episodes WHERE patient_id = $1)
