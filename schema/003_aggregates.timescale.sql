-- gpu-health: no-transaction
-- 003_aggregates (timescale edition only): the continuous aggregates gpu_temp_15min
-- (15-minute temperatures per GPU, over the raw samples) and fleet_health_summary
-- (GPUs per grade per UTC day with their mean scores, over gpu_health_scores).
--
-- Continuous aggregate creation only, nothing else, outside a migration transaction:
-- TimescaleDB refuses CREATE MATERIALIZED VIEW ... WITH DATA in a transaction block.
-- Both are created WITH NO DATA, which TimescaleDB also accepts inside the implicit
-- transaction of a multi-statement batch, and filled by the refresh policies of
-- 004_policies.timescale.sql. materialized_only = true: queries read materialized
-- buckets only, no real-time union with raw rows. The apache edition's plain
-- materialized views of the same names and columns are in 003_aggregates.apache.sql:
-- keep them equal.

CREATE MATERIALIZED VIEW IF NOT EXISTS public.gpu_temp_15min
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
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

CREATE MATERIALIZED VIEW IF NOT EXISTS public.fleet_health_summary
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
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
