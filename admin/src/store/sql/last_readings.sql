SELECT o.code, o.value, o.unit, o.time, o.source, o.device_id
FROM observations o
JOIN (SELECT code, max(time) AS time FROM observations WHERE patient_id = $1 GROUP BY code) m
    ON m.code = o.code AND m.time = o.time
WHERE o.patient_id = $1
ORDER BY o.code
