-- 002_grants: least privilege for the two group roles.
--
-- gpu_health_writer (the processor): reads and upserts data rows and its offsets, may
-- delete offsets (partition reassignment), nothing else: no DELETE on data, no
-- TRUNCATE, no REFERENCES/TRIGGER, and it owns nothing, so it cannot ALTER or DROP.
-- gpu_health_reader (dashboards, reports): USAGE and SELECT only.
-- Migrations run as the owning role; the ALTER DEFAULT PRIVILEGES below apply to
-- tables that role creates later in these schemas (views and materialized views
-- included: later migrations revoke what does not apply to them).
-- GRANT and REVOKE are idempotent.

GRANT USAGE ON SCHEMA public, gpu_health TO gpu_health_writer, gpu_health_reader;

GRANT SELECT, INSERT, UPDATE ON
    public.gpu_metrics,
    public.gpu_metrics_1min,
    public.gpu_metrics_15min,
    public.gpu_assets,
    public.gpu_health_scores,
    public.gpu_failure_predictions,
    public.gpu_metrics_dead_letters
TO gpu_health_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON gpu_health.consumed_offsets TO gpu_health_writer;

GRANT SELECT ON
    public.gpu_metrics,
    public.gpu_metrics_1min,
    public.gpu_metrics_15min,
    public.gpu_assets,
    public.gpu_health_scores,
    public.gpu_failure_predictions,
    public.gpu_metrics_dead_letters,
    gpu_health.consumed_offsets
TO gpu_health_reader;

-- The processor creates gpu_health.schema_migrations before applying migrations; a
-- manual psql run may not have it. Both roles may read it (`schema status`), neither
-- may change it.
DO $$
BEGIN
    IF to_regclass('gpu_health.schema_migrations') IS NOT NULL THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON gpu_health.schema_migrations
            FROM gpu_health_writer;
        GRANT SELECT ON gpu_health.schema_migrations TO gpu_health_writer, gpu_health_reader;
    END IF;
END
$$;

ALTER DEFAULT PRIVILEGES IN SCHEMA public, gpu_health
    GRANT SELECT, INSERT, UPDATE ON TABLES TO gpu_health_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public, gpu_health
    GRANT SELECT ON TABLES TO gpu_health_reader;
