UPDATE web_sessions SET last_seen_at = $2 WHERE session_hash = $1
