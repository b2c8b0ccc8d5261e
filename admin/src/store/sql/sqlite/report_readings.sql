SELECT patient_id, code, count(*) FROM observations
WHERE time >= $1 AND time < $2 AND ($3 IS NULL OR patient_id IN (SELECT value FROM json_each($3)))
GROUP BY patient_id, code
