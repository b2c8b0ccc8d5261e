SELECT mode, at FROM patient_erasures WHERE patient_id = $1
