-- The worklist (see the PostgreSQL text); times are unix microseconds, the
-- snooze end is an RFC 3339 text inside the episode state.
WITH page AS MATERIALIZED (
    SELECT a.episode_id, a.patient_id, a.program, a.code, a.severity, a.opened_at, a.last_event_at, a.summary,
        a.evidence, e.state, e.next_wakeup, a.rank
    FROM (
        SELECT al.*, CASE al.severity WHEN 'critical' THEN 5 WHEN 'high' THEN 4 WHEN 'medium' THEN 3
            WHEN 'low' THEN 2 ELSE 1 END AS rank
        FROM alerts al WHERE al.status = 'open'
    ) a
    LEFT JOIN alert_episodes e ON e.episode_id = a.episode_id
    WHERE ($1 IS NULL OR a.patient_id IN (SELECT value FROM json_each($1)))
    AND ($2 IS NULL OR a.patient_id = $2)
    AND ($3 IS NULL OR a.severity = $3)
    AND ($4 IS NULL OR a.program = $4)
    AND ($5 IS NULL OR $5 = EXISTS (
        SELECT 1 FROM alert_acknowledgments k WHERE k.episode_id = a.episode_id
        AND CASE k.severity WHEN 'critical' THEN 5 WHEN 'high' THEN 4 WHEN 'medium' THEN 3 WHEN 'low' THEN 2 ELSE 1 END
            >= CASE coalesce(e.severity, a.severity) WHEN 'critical' THEN 5 WHEN 'high' THEN 4 WHEN 'medium' THEN 3
            WHEN 'low' THEN 2 ELSE 1 END))
    AND ($6 IS NULL OR $6 = coalesce(
        (julianday(json_extract(e.state, '$.snooze.until')) - 2440587.5) * 86400000000.0 > $7, 0))
    AND ($8 IS NULL OR a.rank < $8 OR (a.rank = $8 AND (a.opened_at, a.episode_id) > ($9, $10)))
    ORDER BY a.rank DESC, a.opened_at, a.episode_id
    LIMIT $11
)
SELECT p.episode_id, p.patient_id, p.program, p.code, p.severity, p.opened_at, p.last_event_at, p.summary,
    p.evidence, p.state, p.next_wakeup, t.doc, p.rank,
    (SELECT o.value FROM observations o
        WHERE o.patient_id = p.patient_id AND o.code = p.code AND o.time < p.opened_at
        ORDER BY o.time DESC LIMIT 1) AS previous_value,
    (SELECT max(o.time) FROM observations o
        WHERE o.patient_id = p.patient_id AND o.code = p.code AND o.time < p.opened_at) AS previous_at,
    (SELECT avg(o.value) FROM observations o
        WHERE o.patient_id = p.patient_id AND o.code = p.code
        AND o.time >= p.opened_at - 604800000000 AND o.time < p.opened_at) AS mean_7d,
    EXISTS (SELECT 1 FROM expertise_requests x WHERE x.episode_id = p.episode_id AND x.answered_at IS NULL)
        AS expertise_open
FROM page p
LEFT JOIN alert_care_teams t ON t.patient_id = p.patient_id
ORDER BY p.rank DESC, p.opened_at, p.episode_id
