DELETE FROM patient_rules WHERE patient_id = $1
