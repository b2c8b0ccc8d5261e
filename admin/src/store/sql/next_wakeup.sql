SELECT next_wakeup FROM alert_episodes WHERE episode_id = $1
