SELECT state FROM alert_episodes WHERE episode_id = $1
