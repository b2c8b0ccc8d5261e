-- $4: re-plan at once ($3) unless resolved or due earlier.
UPDATE alert_episodes SET state = $2, updated_at = $3,
    next_wakeup = CASE WHEN $4 AND resolved_at IS NULL AND (next_wakeup IS NULL OR next_wakeup > $3)
        THEN $3 ELSE next_wakeup END
WHERE episode_id = $1
