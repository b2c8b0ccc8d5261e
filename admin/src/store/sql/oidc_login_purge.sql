DELETE FROM web_oidc_logins WHERE created_at < $1
