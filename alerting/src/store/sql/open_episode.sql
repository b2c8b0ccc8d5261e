INSERT INTO alert_episodes (episode_id, patient_id, updated_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
