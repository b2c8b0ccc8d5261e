SELECT episode_id FROM alerts WHERE patient_id = $1 AND status = 'open' ORDER BY opened_at, episode_id
