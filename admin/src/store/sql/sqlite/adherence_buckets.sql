SELECT DISTINCT time / 900000000 AS bucket
FROM observations WHERE patient_id = $1 AND time >= $2 AND time < $3
