-- Patients discharged (latest period ended) before $1, oldest first.
SELECT p.patient_id FROM patients p
WHERE p.status = 'discharged'
  AND NOT EXISTS (SELECT 1 FROM monitoring_periods m WHERE m.patient_id = p.patient_id AND (m.ended_at IS NULL OR m.ended_at >= $1))
  AND EXISTS (SELECT 1 FROM monitoring_periods m WHERE m.patient_id = p.patient_id)
ORDER BY p.patient_id
