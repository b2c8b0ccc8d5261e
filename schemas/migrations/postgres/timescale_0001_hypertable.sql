-- TimescaleDB only. Each statement runs on its own, outside a transaction
-- (continuous aggregates require it); every statement is idempotent.
SELECT create_hypertable('observations', 'time', chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE, migrate_data => TRUE);
ALTER TABLE observations SET (timescaledb.compress, timescaledb.compress_segmentby = 'patient_id', timescaledb.compress_orderby = 'code, time DESC');
SELECT add_compression_policy('observations', INTERVAL '30 days', if_not_exists => TRUE);
SELECT add_retention_policy('observations', INTERVAL '20 years', if_not_exists => TRUE);
CREATE MATERIALIZED VIEW IF NOT EXISTS observations_hourly WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT patient_id, code, time_bucket(INTERVAL '1 hour', time) AS bucket, count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max FROM observations GROUP BY patient_id, code, time_bucket(INTERVAL '1 hour', time) WITH NO DATA;
SELECT add_continuous_aggregate_policy('observations_hourly', start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
CREATE MATERIALIZED VIEW IF NOT EXISTS observations_daily WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT patient_id, code, time_bucket(INTERVAL '1 day', time) AS bucket, count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max FROM observations GROUP BY patient_id, code, time_bucket(INTERVAL '1 day', time) WITH NO DATA;
SELECT add_continuous_aggregate_policy('observations_daily', start_offset => INTERVAL '30 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);
