DELETE FROM backfill_grants WHERE patient_id = $1
