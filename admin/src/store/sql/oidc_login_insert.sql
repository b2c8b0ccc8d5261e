INSERT INTO web_oidc_logins (state_hash, binding_hash, pending, next, created_at) VALUES ($1, $2, $3, $4, $5)
