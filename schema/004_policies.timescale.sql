-- 004_policies (timescale edition only): compression settings and policies,
-- retention policies, refresh policies and grants of the continuous aggregates (003).
-- On the apache edition the processor refreshes the views and enforces retention
-- itself (003_aggregates.apache.sql) and reports compression as unavailable.
--
-- Compression: segment by GPU, newest first inside a segment; chunks are compressed
-- well past the late horizon (raw after 7 days, 1-minute rollups 14, 15-minute 30).
-- Retention: raw 90 days, 1-minute 365, 15-minute 730. All calls if_not_exists.

-- ALTER TABLE ... SET (timescaledb.compress ...) is only run while compression is off:
-- before 2.14 repeating it with compressed chunks present fails, and later changes of
-- these settings belong in a new migration.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['gpu_metrics', 'gpu_metrics_1min', 'gpu_metrics_15min'] LOOP
        IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                       WHERE h.hypertable_schema = 'public'
                         AND h.hypertable_name = t
                         AND h.compression_enabled) THEN
            EXECUTE format(
                'ALTER TABLE public.%I SET (timescaledb.compress, '
                'timescaledb.compress_segmentby = %L, timescaledb.compress_orderby = %L)',
                t, 'gpu_uuid', 'time DESC');
        END IF;
    END LOOP;
END
$$;

SELECT add_compression_policy('public.gpu_metrics', compress_after => INTERVAL '7 days',
                              if_not_exists => true);
SELECT add_compression_policy('public.gpu_metrics_1min', compress_after => INTERVAL '14 days',
                              if_not_exists => true);
SELECT add_compression_policy('public.gpu_metrics_15min', compress_after => INTERVAL '30 days',
                              if_not_exists => true);

SELECT add_retention_policy('public.gpu_metrics', drop_after => INTERVAL '90 days',
                            if_not_exists => true);
SELECT add_retention_policy('public.gpu_metrics_1min', drop_after => INTERVAL '365 days',
                            if_not_exists => true);
SELECT add_retention_policy('public.gpu_metrics_15min', drop_after => INTERVAL '730 days',
                            if_not_exists => true);

-- A refresh only rematerializes buckets whose raw rows changed, so a wide start_offset
-- costs little and picks up backfills and late rows; it stays below the raw table's
-- 90-day retention so dropped raw chunks never erase materialized buckets.
-- gpu_temp_15min: every 15 minutes, up to the last complete bucket (end_offset of one
-- bucket). fleet_health_summary: scores of day D are written when D closes, so an
-- hourly refresh up to now - 1 hour materializes day D shortly after midnight UTC.
SELECT add_continuous_aggregate_policy('public.gpu_temp_15min',
    start_offset      => INTERVAL '30 days',
    end_offset        => INTERVAL '15 minutes',
    schedule_interval => INTERVAL '15 minutes',
    if_not_exists     => true);

SELECT add_continuous_aggregate_policy('public.fleet_health_summary',
    start_offset      => INTERVAL '35 days',
    end_offset        => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour',
    if_not_exists     => true);

-- Default privileges (002) gave the writer INSERT and UPDATE on the new views; the
-- aggregates are read-only for both roles. TimescaleDB applies GRANT/REVOKE on a
-- continuous aggregate to its materialization hypertable too.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public.gpu_temp_15min, public.fleet_health_summary
    FROM gpu_health_writer;
GRANT SELECT ON public.gpu_temp_15min, public.fleet_health_summary
    TO gpu_health_writer, gpu_health_reader;
