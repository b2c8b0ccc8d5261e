SELECT s.csrf_token, s.last_seen_at, s.expires_at,
       u.user_id, u.display_name, u.email, u.role, u.physician_id, u.language, u.time_zone, u.oidc_subject, u.disabled_at,
       u.password_hash, u.failed_logins, u.locked_until
FROM web_sessions s JOIN users u ON u.user_id = s.user_id
WHERE s.session_hash = $1
