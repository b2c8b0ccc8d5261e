SELECT bucket, n, mean, min, max FROM observations_hourly
WHERE patient_id = $1 AND code = $2 AND bucket >= $3 ORDER BY bucket
