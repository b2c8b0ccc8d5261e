SELECT max(created_at) FROM alert_outbox WHERE recipient = $1 AND key LIKE 'digest:%'
