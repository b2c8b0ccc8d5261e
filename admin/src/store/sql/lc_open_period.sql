SELECT period_id FROM monitoring_periods WHERE patient_id = $1 AND ended_at IS NULL
