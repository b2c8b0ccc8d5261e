SELECT episode_id, patient_id, rule_id, applied_at IS NOT NULL FROM episode_closes
WHERE applied_at IS NULL ORDER BY requested_at LIMIT 1000
