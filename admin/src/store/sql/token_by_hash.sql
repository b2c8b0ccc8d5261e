SELECT name, role, physician_id, created_at, created_by, revoked_at, expires_at, last_used_at FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL
