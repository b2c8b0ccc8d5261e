INSERT INTO web_sessions (session_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, origin)
VALUES ($1, $2, $3, $4, $4, $5, $6)
