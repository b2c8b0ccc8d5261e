SELECT time, code, value, unit, source, device_id, received_at, time_source, original_value, original_unit FROM (
    SELECT time, code, value, unit, source, device_id, received_at, time_source, original_value, original_unit,
        CASE WHEN code IN ('8480-6', '8462-4') THEN '85354-9' ELSE code END AS grp
    FROM observations
    WHERE patient_id = $1 AND ($2 IS NULL OR code IN (SELECT value FROM json_each($2)))
    AND ($3 IS NULL OR time >= $3) AND ($4 IS NULL OR time < $4)
) o
WHERE ($5 IS NULL OR (time, grp) > ($5, $6))
ORDER BY time, grp, code LIMIT $7
