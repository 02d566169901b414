-- 005_incremental_temp_15min (apache edition only): gpu_temp_15min refreshed by the
-- time ranges that changed, like a continuous aggregate's invalidation log, instead of
-- recomputed in full.
--
-- A plain materialized view recomputes every bucket on every refresh: at 1,000 GPUs
-- that is 86 M raw rows a day and 90 days of them, each refresh interval. From here on
-- gpu_temp_15min is a hypertable with the same name and columns (30-day chunks, like
-- gpu_metrics_15min). Each flush records the time range of its raw rows in
-- gpu_health.aggregate_invalidations, in the flush's own transaction;
-- gpu_health.refresh_aggregates() merges the logged ranges, widens them to whole
-- 15-minute buckets and recomputes only those buckets from gpu_metrics. As with the
-- timescale edition's continuous aggregate, buckets stay after retention drops their
-- raw rows. fleet_health_summary (one row per day and grade) stays a materialized view.

DROP MATERIALIZED VIEW IF EXISTS public.gpu_temp_15min;

CREATE TABLE IF NOT EXISTS public.gpu_temp_15min (
    bucket          timestamptz      NOT NULL,
    gpu_uuid        text             NOT NULL,
    avg_temp        double precision,
    max_temp        double precision,
    min_temp        double precision,
    avg_memory_temp double precision,
    sample_count    bigint           NOT NULL
);
SELECT create_hypertable('public.gpu_temp_15min', by_range('bucket', INTERVAL '30 days'),
                         create_default_indexes => false, if_not_exists => true);
CREATE UNIQUE INDEX IF NOT EXISTS gpu_temp_15min_gpu_uuid_bucket_key
    ON public.gpu_temp_15min (gpu_uuid, bucket);

INSERT INTO public.gpu_temp_15min
SELECT time_bucket(INTERVAL '15 minutes', time), gpu_uuid,
       avg(gpu_temp), max(gpu_temp), min(gpu_temp), avg(memory_temp), count(*)
FROM public.gpu_metrics
GROUP BY 1, 2;

CREATE TABLE IF NOT EXISTS gpu_health.aggregate_invalidations (
    lo timestamptz NOT NULL,
    hi timestamptz NOT NULL CHECK (hi >= lo)
);
COMMENT ON TABLE gpu_health.aggregate_invalidations IS
    'apache edition: event-time ranges [lo, hi] of raw rows written since the last '
    'gpu_health.refresh_aggregates(); consumed by it';

-- The view is read-only for both roles; the writer may only append to the log
-- (default privileges from 002 gave it INSERT and UPDATE on both).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public.gpu_temp_15min FROM gpu_health_writer;
GRANT SELECT ON public.gpu_temp_15min TO gpu_health_writer, gpu_health_reader;
REVOKE UPDATE, DELETE, TRUNCATE ON gpu_health.aggregate_invalidations FROM gpu_health_writer;
GRANT INSERT ON gpu_health.aggregate_invalidations TO gpu_health_writer;

-- Recomputes the invalidated buckets of gpu_temp_15min and refreshes
-- fleet_health_summary, as their owner. One caller at a time (an advisory lock), so
-- that two processors on one database never recompute the same buckets at once.
CREATE OR REPLACE FUNCTION gpu_health.refresh_aggregates()
RETURNS SETOF regclass
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    changed tstzmultirange;
    r tstzrange;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('gpu_health.refresh_aggregates'));
    WITH taken AS (DELETE FROM gpu_health.aggregate_invalidations RETURNING lo, hi)
    SELECT range_agg(tstzrange(time_bucket(INTERVAL '15 minutes', lo),
                               time_bucket(INTERVAL '15 minutes', hi) + INTERVAL '15 minutes'))
      INTO changed
      FROM taken;
    IF changed IS NOT NULL THEN
        FOR r IN SELECT u FROM unnest(changed) AS u LOOP
            DELETE FROM public.gpu_temp_15min
             WHERE bucket >= lower(r) AND bucket < upper(r);
            INSERT INTO public.gpu_temp_15min
            SELECT time_bucket(INTERVAL '15 minutes', time), gpu_uuid,
                   avg(gpu_temp), max(gpu_temp), min(gpu_temp), avg(memory_temp), count(*)
              FROM public.gpu_metrics
             WHERE time >= lower(r) AND time < upper(r)
             GROUP BY 1, 2;
        END LOOP;
    END IF;
    RETURN NEXT 'public.gpu_temp_15min'::regclass;

    IF (SELECT c.relispopulated FROM pg_class c
         WHERE c.oid = 'public.fleet_health_summary'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY public.fleet_health_summary;
    ELSE
        REFRESH MATERIALIZED VIEW public.fleet_health_summary;
    END IF;
    RETURN NEXT 'public.fleet_health_summary'::regclass;
END
$$;
COMMENT ON FUNCTION gpu_health.refresh_aggregates() IS
    'apache edition: recompute the invalidated buckets of gpu_temp_15min and refresh '
    'fleet_health_summary, as their owner';
REVOKE ALL ON FUNCTION gpu_health.refresh_aggregates() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gpu_health.refresh_aggregates() TO gpu_health_writer;
