INSERT INTO api_tokens (name, token_hash, role, physician_id, created_at, created_by, expires_at)
VALUES ($1, $2, $3, $4, now(), $5, $6)
RETURNING name, role, physician_id, created_at, created_by, revoked_at, expires_at, last_used_at
