INSERT INTO users (user_id, display_name, email, role, physician_id, language, time_zone, password_hash, oidc_subject, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (user_id) DO NOTHING
