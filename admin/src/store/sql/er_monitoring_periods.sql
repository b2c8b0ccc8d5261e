DELETE FROM monitoring_periods WHERE patient_id = $1
