UPDATE alerts SET status = 'closed' WHERE episode_id = $1 AND status = 'open'
