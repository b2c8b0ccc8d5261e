SELECT patient_id FROM alert_care_teams
WHERE EXISTS (SELECT 1 FROM json_each(doc, '$.nurses') WHERE value = $1) ORDER BY patient_id
