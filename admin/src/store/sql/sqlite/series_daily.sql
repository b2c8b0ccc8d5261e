SELECT (time / 86400000000) * 86400000000 AS bucket, count(*), avg(value), min(value), max(value)
FROM observations WHERE patient_id = $1 AND code = $2 AND time >= $3
GROUP BY time / 86400000000 ORDER BY bucket
