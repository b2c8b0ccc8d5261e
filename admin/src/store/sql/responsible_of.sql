SELECT p.doc FROM alert_care_teams t JOIN alert_physicians p ON p.physician_id = t.responsible WHERE t.patient_id = $1
