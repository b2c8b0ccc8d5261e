-- No reminder or escalation for a discharged patient's episodes.
UPDATE alert_episodes SET next_wakeup = NULL WHERE patient_id = $1 AND next_wakeup IS NOT NULL
