DELETE FROM web_sessions WHERE session_hash = $1
