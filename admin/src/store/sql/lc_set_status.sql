UPDATE patients SET status = $2 WHERE patient_id = $1
