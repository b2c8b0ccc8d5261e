SELECT period_id, program, prescriber, started_at, planned_end, consent_at, consent_by, recorded_by, recorded_at,
       ended_at, end_reason, end_note
FROM monitoring_periods WHERE patient_id = $1 ORDER BY started_at, period_id
