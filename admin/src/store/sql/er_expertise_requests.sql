DELETE FROM expertise_requests WHERE patient_id = $1
