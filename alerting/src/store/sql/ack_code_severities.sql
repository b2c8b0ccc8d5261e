SELECT severity FROM alert_ack_codes WHERE episode_id = $1 AND physician_id = $2
