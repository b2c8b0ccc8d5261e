SELECT time, code, value, unit, source, device_id, received_at, time_source, original_value, original_unit FROM (
    SELECT time, code, value, unit, source, device_id, received_at, time_source, original_value, original_unit,
        CASE WHEN code IN ('8480-6', '8462-4') THEN '85354-9' ELSE code END AS grp
    FROM observations
    WHERE patient_id = $1 AND ($2::text[] IS NULL OR code = ANY($2))
    AND ($3::timestamptz IS NULL OR time >= $3) AND ($4::timestamptz IS NULL OR time < $4)
) o
WHERE ($5::timestamptz IS NULL OR (time, grp) > ($5, $6::text))
ORDER BY time, grp, code LIMIT $7
