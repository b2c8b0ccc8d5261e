INSERT INTO alert_physicians (physician_id, mobile, doc, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (physician_id) DO UPDATE SET mobile = excluded.mobile, doc = excluded.doc, updated_at = excluded.updated_at
