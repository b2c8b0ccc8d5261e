SELECT patient_id, code, count(*)::bigint FROM observations
WHERE time >= $1 AND time < $2 AND ($3::text[] IS NULL OR patient_id = ANY($3))
GROUP BY patient_id, code
