SELECT e.state, e.episode_id FROM alert_episodes e JOIN alert_outbox o ON o.episode_id = e.episode_id
WHERE o.key = $1 FOR UPDATE OF e
