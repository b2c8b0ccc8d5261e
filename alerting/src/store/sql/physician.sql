SELECT doc FROM alert_physicians WHERE physician_id = $1
