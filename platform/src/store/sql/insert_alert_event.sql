INSERT INTO alert_events (event_id, episode_id, patient_id, kind, severity, reading_time, detected_at, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING
