SELECT name, role, physician_id, created_at, created_by, revoked_at, expires_at, last_used_at FROM api_tokens ORDER BY name, created_at
