SELECT device_id, patient_id, valid_until FROM backfill_grants WHERE valid_until > now()
