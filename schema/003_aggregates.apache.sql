-- 003_aggregates (apache edition only): what the timescale edition gets from
-- continuous aggregates and retention policies (003/004 .timescale.sql), in the form
-- the processor maintains itself.
--
-- 1. gpu_temp_15min and fleet_health_summary as plain materialized views with the
--    same names and columns as the continuous aggregates (keep them equal). Created
--    WITH NO DATA: the first refresh must be a plain REFRESH MATERIALIZED VIEW, later
--    ones can be CONCURRENTLY thanks to the unique indexes (readers are not blocked).
-- 2. gpu_health.retention_policies: raw 90 days, 1-minute rollups 365, 15-minute 730,
--    enforced by the processor with drop_chunks on a schedule (optionally archiving
--    each chunk to Parquet first: show_chunks(older_than => now() - drop_after)).
--
-- REFRESH MATERIALIZED VIEW and drop_chunks need the owner. A processor connected as
-- gpu_health_writer (which owns nothing) calls gpu_health.refresh_aggregates() and
-- gpu_health.enforce_retention() instead: SECURITY DEFINER functions that run as the
-- owner, take no arguments and do only that (the caller chooses when, never what).

CREATE MATERIALIZED VIEW IF NOT EXISTS public.gpu_temp_15min AS
SELECT
    time_bucket(INTERVAL '15 minutes', time) AS bucket,
    gpu_uuid,
    avg(gpu_temp)    AS avg_temp,
    max(gpu_temp)    AS max_temp,
    min(gpu_temp)    AS min_temp,
    avg(memory_temp) AS avg_memory_temp,
    count(*)         AS sample_count
FROM public.gpu_metrics
GROUP BY bucket, gpu_uuid
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS gpu_temp_15min_gpu_uuid_bucket_key
    ON public.gpu_temp_15min (gpu_uuid, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS public.fleet_health_summary AS
SELECT
    time_bucket(INTERVAL '1 day', time) AS day,
    grade,
    count(*)                  AS gpus,
    avg(overall_score)        AS avg_score,
    min(overall_score)        AS min_score,
    avg(thermal_score)        AS avg_thermal_score,
    avg(power_score)          AS avg_power_score,
    avg(memory_score)         AS avg_memory_score,
    avg(performance_score)    AS avg_performance_score,
    avg(reliability_score)    AS avg_reliability_score
FROM public.gpu_health_scores
GROUP BY day, grade
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS fleet_health_summary_day_grade_key
    ON public.fleet_health_summary (day, grade);

-- Default privileges (002) gave the writer INSERT and UPDATE on the new views; they are
-- read-only for both roles.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public.gpu_temp_15min, public.fleet_health_summary
    FROM gpu_health_writer;
GRANT SELECT ON public.gpu_temp_15min, public.fleet_health_summary
    TO gpu_health_writer, gpu_health_reader;

-- Refreshes both views as their owner. Takes no arguments: the caller chooses when,
-- never what. Returns the views refreshed, in order.
CREATE OR REPLACE FUNCTION gpu_health.refresh_aggregates()
RETURNS SETOF regclass
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    v regclass;
BEGIN
    FOREACH v IN ARRAY ARRAY['public.gpu_temp_15min'::regclass,
                             'public.fleet_health_summary'::regclass] LOOP
        IF (SELECT c.relispopulated FROM pg_class c WHERE c.oid = v) THEN
            EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %s', v);
        ELSE
            EXECUTE format('REFRESH MATERIALIZED VIEW %s', v);
        END IF;
        RETURN NEXT v;
    END LOOP;
END
$$;
COMMENT ON FUNCTION gpu_health.refresh_aggregates() IS
    'apache edition: refresh gpu_temp_15min and fleet_health_summary as their owner '
    '(first time plain, then CONCURRENTLY)';
REVOKE ALL ON FUNCTION gpu_health.refresh_aggregates() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gpu_health.refresh_aggregates() TO gpu_health_writer;

-- ---------------------------------------------------------------------------------
-- Retention as data.
-- ---------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS gpu_health.retention_policies (
    hypertable text     PRIMARY KEY,  -- schema-qualified, e.g. 'public.gpu_metrics'
    drop_after interval NOT NULL CHECK (drop_after > INTERVAL '0')
);
COMMENT ON TABLE gpu_health.retention_policies IS
    'apache edition: chunks of each hypertable entirely older than now() - drop_after are '
    'dropped by the processor (gpu_health.enforce_retention())';

INSERT INTO gpu_health.retention_policies (hypertable, drop_after) VALUES
    ('public.gpu_metrics',       INTERVAL '90 days'),
    ('public.gpu_metrics_1min',  INTERVAL '365 days'),
    ('public.gpu_metrics_15min', INTERVAL '730 days')
ON CONFLICT (hypertable) DO NOTHING;

-- Policies are configuration: both roles read them, neither changes them (default
-- privileges from 002 gave the writer INSERT and UPDATE).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON gpu_health.retention_policies FROM gpu_health_writer;
GRANT SELECT ON gpu_health.retention_policies TO gpu_health_writer, gpu_health_reader;

-- Drops, as the owner, every chunk entirely older than now() - drop_after of each
-- policy; returns the dropped chunks.
CREATE OR REPLACE FUNCTION gpu_health.enforce_retention()
RETURNS TABLE (hypertable_name text, chunk_name text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT r.hypertable, r.drop_after
             FROM gpu_health.retention_policies r
             ORDER BY r.hypertable LOOP
        RETURN QUERY
            SELECT p.hypertable, c::text
            FROM drop_chunks(p.hypertable::regclass, older_than => now() - p.drop_after) AS c;
    END LOOP;
END
$$;
COMMENT ON FUNCTION gpu_health.enforce_retention() IS
    'apache edition: drop chunks older than gpu_health.retention_policies allow, as of now()';
REVOKE ALL ON FUNCTION gpu_health.enforce_retention() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gpu_health.enforce_retention() TO gpu_health_writer;
