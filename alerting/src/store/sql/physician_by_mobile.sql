SELECT doc FROM alert_physicians WHERE mobile = $1
