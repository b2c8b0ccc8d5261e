SELECT d.device_id, d.kind, d.status, e.patient_id, e.valid_from, e.valid_to
FROM devices d LEFT JOIN enrolments e ON e.device_id = d.device_id
WHERE ($1::text IS NULL OR d.device_id = $1)
AND ($2::text[] IS NULL OR d.device_id IN (SELECT device_id FROM enrolments WHERE patient_id = ANY($2)))
ORDER BY d.device_id, e.valid_from
