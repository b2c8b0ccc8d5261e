SELECT patient_id FROM monitoring_periods WHERE period_id = $1
