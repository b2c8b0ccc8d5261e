UPDATE episode_closes SET applied_at = now()
WHERE episode_id IN (SELECT value FROM json_each($1)) AND applied_at IS NULL
