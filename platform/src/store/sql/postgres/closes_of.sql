SELECT episode_id, patient_id, rule_id, applied_at IS NOT NULL FROM episode_closes WHERE patient_id = ANY($1)
