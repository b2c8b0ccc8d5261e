UPDATE users SET oidc_subject = $2 WHERE user_id = $1 AND oidc_subject IS NULL
