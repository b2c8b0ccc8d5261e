SELECT doc FROM alert_physicians WHERE physician_id = ANY($1)
