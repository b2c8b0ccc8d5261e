UPDATE users SET disabled_at = $2 WHERE user_id = $1
