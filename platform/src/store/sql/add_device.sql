INSERT INTO devices (device_id, kind, created_at) VALUES ($1, $2, now()) ON CONFLICT (device_id) DO NOTHING
