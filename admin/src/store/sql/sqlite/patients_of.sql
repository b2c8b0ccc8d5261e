SELECT patient_id FROM alert_care_teams
WHERE responsible = $1 OR EXISTS (SELECT 1 FROM json_each(doc, '$.deputies') WHERE value = $1) ORDER BY patient_id
