SELECT doc FROM alert_physicians WHERE physician_id IN (SELECT value FROM json_each($1))
