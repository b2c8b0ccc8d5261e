UPDATE sms_inbound_guard SET window_start = $2, failures = $3, locked_until = $4, lockouts = $5
WHERE sender_key = $1
