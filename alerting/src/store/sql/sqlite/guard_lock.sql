SELECT window_start, failures, locked_until, lockouts FROM sms_inbound_guard WHERE sender_key = $1
