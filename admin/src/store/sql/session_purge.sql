DELETE FROM web_sessions WHERE expires_at <= $1 OR last_seen_at <= $2
