UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL WHERE user_id = $1
