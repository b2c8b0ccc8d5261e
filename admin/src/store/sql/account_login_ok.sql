UPDATE users SET failed_logins = 0, locked_until = NULL WHERE user_id = $1
