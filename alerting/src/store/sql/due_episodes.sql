SELECT episode_id FROM alert_episodes WHERE next_wakeup <= $1 AND state IS NOT NULL ORDER BY next_wakeup LIMIT $2
