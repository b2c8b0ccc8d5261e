SELECT user_id, display_name, email, role, physician_id, language, time_zone, oidc_subject, disabled_at, password_hash, failed_logins, locked_until
FROM users WHERE lower(email) = lower($1) AND oidc_subject IS NULL AND disabled_at IS NULL
ORDER BY user_id LIMIT 2
