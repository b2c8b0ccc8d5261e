DELETE FROM alerts WHERE patient_id = $1
