UPDATE users SET language = $2, time_zone = $3 WHERE user_id = $1
