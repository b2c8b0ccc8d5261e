UPDATE api_tokens SET last_used_at = $2 WHERE token_hash = $1
