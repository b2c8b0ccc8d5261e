SELECT DISTINCT floor(extract(epoch FROM time) / 900)::bigint AS bucket
FROM observations WHERE patient_id = $1 AND time >= $2 AND time < $3
