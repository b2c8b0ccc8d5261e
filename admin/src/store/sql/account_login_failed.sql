UPDATE users SET failed_logins = failed_logins + 1,
    locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END
WHERE user_id = $1
