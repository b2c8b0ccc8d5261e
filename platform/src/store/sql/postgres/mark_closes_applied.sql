UPDATE episode_closes SET applied_at = now() WHERE episode_id = ANY($1) AND applied_at IS NULL
