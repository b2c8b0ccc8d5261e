-- Days with data per patient: distinct local calendar days (offset per
-- constant-offset segment of the month: $4, $5 segment ends; $6..$8 offsets, s).
SELECT patient_id, count(DISTINCT floor((extract(epoch FROM time)
    + CASE WHEN time < $4 THEN $6::bigint WHEN time < $5 THEN $7::bigint ELSE $8::bigint END) / 86400))::bigint
FROM observations
WHERE time >= $1 AND time < $2 AND ($3::text[] IS NULL OR patient_id = ANY($3))
GROUP BY patient_id
