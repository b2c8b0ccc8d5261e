UPDATE sms_inbound_guard SET failures = 0 WHERE sender_key = $1
