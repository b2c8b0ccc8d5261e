SELECT retired_at FROM devices WHERE device_id = $1 FOR UPDATE
