SELECT time, value, unit FROM observations WHERE patient_id = $1 AND code = $2 AND time >= $3 AND time <= $4
ORDER BY time LIMIT 5000
