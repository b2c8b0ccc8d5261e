UPDATE monitoring_periods SET ended_at = $2, end_reason = $3, end_note = $4
WHERE patient_id = $1 AND ended_at IS NULL
