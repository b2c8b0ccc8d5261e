-- One replica forms a physician's digest at a time (released at commit).
SELECT pg_try_advisory_xact_lock(hashtextextended('vitalwatch.digest:' || $1, 0))
