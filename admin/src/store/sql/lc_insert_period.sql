INSERT INTO monitoring_periods (patient_id, program, prescriber, started_at, planned_end, consent_at, consent_by, recorded_by, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING period_id
