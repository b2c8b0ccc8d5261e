SELECT user_id, display_name, email, role, physician_id, language, time_zone, oidc_subject, disabled_at, password_hash, failed_logins, locked_until
FROM users ORDER BY user_id
