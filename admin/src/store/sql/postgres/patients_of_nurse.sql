SELECT patient_id FROM alert_care_teams WHERE jsonb_exists(doc->'nurses', $1) ORDER BY patient_id
