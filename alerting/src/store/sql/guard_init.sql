INSERT INTO sms_inbound_guard (sender_key, window_start) VALUES ($1, $2) ON CONFLICT DO NOTHING
