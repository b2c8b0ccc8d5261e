-- Days with data per patient (see the PostgreSQL query); times are unix microseconds.
SELECT patient_id, count(DISTINCT (time / 1000000
    + CASE WHEN time < $4 THEN $6 WHEN time < $5 THEN $7 ELSE $8 END) / 86400)
FROM observations
WHERE time >= $1 AND time < $2 AND ($3 IS NULL OR patient_id IN (SELECT value FROM json_each($3)))
GROUP BY patient_id
