SELECT device_id, retired_at FROM devices
