SELECT patient_id FROM alert_care_teams
WHERE responsible = $1 OR jsonb_exists(doc->'deputies', $1) ORDER BY patient_id
