SELECT doc FROM alert_physicians ORDER BY physician_id
