DELETE FROM observations WHERE patient_id = $1
