DELETE FROM web_oidc_logins WHERE state_hash = $1 RETURNING binding_hash, pending, next, created_at
