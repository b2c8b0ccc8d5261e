-- Hourly and daily aggregates per patient and code. On plain PostgreSQL these are
-- ordinary views; on TimescaleDB migration 0003t replaces them with continuous
-- aggregates of the same name and columns, so queries work on both.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE $v$
            CREATE OR REPLACE VIEW observations_hourly AS
            SELECT patient_id, code, date_trunc('hour', time) AS bucket,
                   count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max
            FROM observations GROUP BY patient_id, code, date_trunc('hour', time)
        $v$;
        EXECUTE $v$
            CREATE OR REPLACE VIEW observations_daily AS
            SELECT patient_id, code, date_trunc('day', time) AS bucket,
                   count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max
            FROM observations GROUP BY patient_id, code, date_trunc('day', time)
        $v$;
    END IF;
END
$$;
