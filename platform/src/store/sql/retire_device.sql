UPDATE devices SET status = 'retired', retired_at = $2 WHERE device_id = $1
