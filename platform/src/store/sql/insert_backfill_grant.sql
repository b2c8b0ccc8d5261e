INSERT INTO backfill_grants (device_id, patient_id, granted_at, valid_until, reason)
VALUES ($1, $2, clock_timestamp(), $3, $4)
