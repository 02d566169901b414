-- 001_tables: extension, schemas, roles and every table both editions share.
--
-- Column order of each table equals the Arrow schema the processor builds for it
-- (the raw sink COPYs by position): gpu_metrics = src/event/schema.rs raw_schema(),
-- gpu_metrics_1min / gpu_metrics_15min = src/window/rollup.rs rollup_schema(),
-- gpu_health_scores = src/health/scores.rs scores_schema(), gpu_metrics_dead_letters =
-- src/event/dead_letter.rs dead_letter_schema() plus received_at. Change the Rust and
-- this file together, in a new migration.
--
-- Chunk intervals are the seed's: raw 1 day, 1-minute rollups 7 days, 15-minute
-- rollups, scores and predictions 30 days. The primary keys are what the sinks'
-- ON CONFLICT clauses name. Every statement is idempotent: re-running changes nothing.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE SCHEMA IF NOT EXISTS gpu_health;
COMMENT ON SCHEMA gpu_health IS
    'gpu-health bookkeeping: applied migrations, consumed Kafka offsets, retention settings';

-- Group roles, no login: grant them to the login users of the processor (writer) and of
-- dashboards/reports (reader). Privileges are in 002_grants.sql.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gpu_health_writer') THEN
        BEGIN
            CREATE ROLE gpu_health_writer NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently by another applier
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gpu_health_reader') THEN
        BEGIN
            CREATE ROLE gpu_health_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------
-- gpu_metrics: raw 10-second samples, one row per (time, gpu_uuid), first copy wins.
-- ---------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.gpu_metrics (
    -- identity
    time                        timestamptz      NOT NULL,
    gpu_uuid                    text             NOT NULL,
    hostname                    text             NOT NULL,
    pci_bus_id                  text,
    device_index                integer,
    gpu_model                   text,
    rack_id                     text,
    cluster_id                  text,
    datacenter                  text,
    -- metrics, in METRICS order
    gpu_temp                    double precision,
    memory_temp                 double precision,
    power_usage                 double precision,
    throttle_reasons            bigint,
    fb_used_bytes               bigint,
    fb_free_bytes               bigint,
    fb_total_bytes              bigint,
    memory_utilization          double precision,
    ecc_sbe_volatile            bigint,
    ecc_dbe_volatile            bigint,
    ecc_sbe_aggregate           bigint,
    ecc_dbe_aggregate           bigint,
    retired_pages_dbe           bigint,
    sm_active                   double precision,
    sm_occupancy                double precision,
    tensor_active               double precision,
    dram_active                 double precision,
    pcie_tx_bytes_per_sec       double precision,
    pcie_rx_bytes_per_sec       double precision,
    sm_clock_mhz                bigint,
    mem_clock_mhz               bigint,
    gpu_utilization             double precision,
    mem_copy_utilization        double precision,
    collection_latency_ms       double precision,
    remapped_rows_correctable   bigint,
    remapped_rows_uncorrectable bigint,
    row_remap_pending           boolean,
    row_remap_failure           boolean,
    xid                         bigint,
    thermal_violation_ns        bigint,
    power_violation_ns          bigint,
    pcie_replay_counter         bigint,
    -- validation
    validation_passed           boolean          NOT NULL,
    validation_errors           text,
    PRIMARY KEY (time, gpu_uuid)
);

-- The primary key already indexes time; no extra default time index.
SELECT create_hypertable('public.gpu_metrics', by_range('time', INTERVAL '1 day'),
                         create_default_indexes => false, if_not_exists => true);

CREATE INDEX IF NOT EXISTS gpu_metrics_gpu_uuid_time_idx
    ON public.gpu_metrics (gpu_uuid, time DESC);
CREATE INDEX IF NOT EXISTS gpu_metrics_hostname_time_idx
    ON public.gpu_metrics (hostname, time DESC);
CREATE INDEX IF NOT EXISTS gpu_metrics_throttled_idx
    ON public.gpu_metrics (gpu_uuid, time DESC)
    WHERE throttle_reasons <> 0;
CREATE INDEX IF NOT EXISTS gpu_metrics_ecc_volatile_idx
    ON public.gpu_metrics (gpu_uuid, time DESC)
    WHERE ecc_dbe_volatile > 0 OR ecc_sbe_volatile > 0;
-- Dashboard panels read these four gauges per GPU: index-only scans.
CREATE INDEX IF NOT EXISTS gpu_metrics_dashboard_idx
    ON public.gpu_metrics (gpu_uuid, time DESC)
    INCLUDE (gpu_temp, power_usage, gpu_utilization, sm_active);

COMMENT ON TABLE public.gpu_metrics IS
    'Raw GPU samples, one row per (time, gpu_uuid); the first copy wins. A metric of the '
    'wrong type, NaN/Inf or out of its physical range is NULL, validation_passed is false '
    'and validation_errors names column:reason.';
COMMENT ON COLUMN public.gpu_metrics.pcie_tx_bytes_per_sec IS 'PCIe TX throughput, bytes per second';
COMMENT ON COLUMN public.gpu_metrics.pcie_rx_bytes_per_sec IS 'PCIe RX throughput, bytes per second';

-- ---------------------------------------------------------------------------------
-- gpu_metrics_1min / gpu_metrics_15min: event-time rollups, buckets [t0, t0 + width)
-- aligned like time_bucket(width, time). Same layout for both widths.
-- ---------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.gpu_metrics_1min (
    time                        timestamptz      NOT NULL,
    gpu_uuid                    text             NOT NULL,
    hostname                    text             NOT NULL,
    gpu_temp_avg                double precision,
    gpu_temp_min                double precision,
    gpu_temp_max                double precision,
    gpu_temp_stddev             double precision,
    memory_temp_avg             double precision,
    memory_temp_min             double precision,
    memory_temp_max             double precision,
    memory_temp_stddev          double precision,
    power_usage_avg             double precision,
    power_usage_min             double precision,
    power_usage_max             double precision,
    power_usage_stddev          double precision,
    gpu_utilization_avg         double precision,
    gpu_utilization_min         double precision,
    gpu_utilization_max         double precision,
    gpu_utilization_stddev      double precision,
    memory_utilization_avg      double precision,
    memory_utilization_min      double precision,
    memory_utilization_max      double precision,
    memory_utilization_stddev   double precision,
    mem_copy_utilization_avg    double precision,
    mem_copy_utilization_min    double precision,
    mem_copy_utilization_max    double precision,
    mem_copy_utilization_stddev double precision,
    sm_active_avg               double precision,
    sm_active_min               double precision,
    sm_active_max               double precision,
    sm_active_stddev            double precision,
    sm_occupancy_avg            double precision,
    sm_occupancy_min            double precision,
    sm_occupancy_max            double precision,
    sm_occupancy_stddev         double precision,
    tensor_active_avg           double precision,
    tensor_active_min           double precision,
    tensor_active_max           double precision,
    tensor_active_stddev        double precision,
    dram_active_avg             double precision,
    dram_active_min             double precision,
    dram_active_max             double precision,
    dram_active_stddev          double precision,
    fb_used_bytes_avg           double precision,
    fb_used_bytes_min           double precision,
    fb_used_bytes_max           double precision,
    fb_used_bytes_stddev        double precision,
    sm_clock_mhz_avg            double precision,
    sm_clock_mhz_min            double precision,
    sm_clock_mhz_max            double precision,
    sm_clock_mhz_stddev         double precision,
    mem_clock_mhz_avg           double precision,
    mem_clock_mhz_min           double precision,
    mem_clock_mhz_max           double precision,
    mem_clock_mhz_stddev        double precision,
    pcie_tx_mbps_avg            double precision,
    pcie_tx_mbps_min            double precision,
    pcie_tx_mbps_max            double precision,
    pcie_tx_mbps_stddev         double precision,
    pcie_rx_mbps_avg            double precision,
    pcie_rx_mbps_min            double precision,
    pcie_rx_mbps_max            double precision,
    pcie_rx_mbps_stddev         double precision,
    ecc_sbe_delta               bigint,
    ecc_dbe_delta               bigint,
    retired_pages_delta         bigint,
    ecc_dbe_volatile_max        bigint,
    throttle_events             bigint           NOT NULL,
    thermal_throttle_events     bigint           NOT NULL,
    power_throttle_events       bigint           NOT NULL,
    power_cap_events            bigint           NOT NULL,
    sample_count                bigint           NOT NULL,
    invalid_sample_count        bigint           NOT NULL,
    PRIMARY KEY (time, gpu_uuid)
);

CREATE TABLE IF NOT EXISTS public.gpu_metrics_15min
    (LIKE public.gpu_metrics_1min INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
-- LIKE does not copy the primary key unless INCLUDING INDEXES; add it by name so the
-- statement stays idempotent.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'public.gpu_metrics_15min'::regclass AND contype = 'p') THEN
        ALTER TABLE public.gpu_metrics_15min
            ADD CONSTRAINT gpu_metrics_15min_pkey PRIMARY KEY (time, gpu_uuid);
    END IF;
END
$$;

SELECT create_hypertable('public.gpu_metrics_1min', by_range('time', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('public.gpu_metrics_15min', by_range('time', INTERVAL '30 days'),
                         create_default_indexes => false, if_not_exists => true);

CREATE INDEX IF NOT EXISTS gpu_metrics_1min_gpu_uuid_time_idx
    ON public.gpu_metrics_1min (gpu_uuid, time DESC);
CREATE INDEX IF NOT EXISTS gpu_metrics_15min_gpu_uuid_time_idx
    ON public.gpu_metrics_15min (gpu_uuid, time DESC);

DO $$
DECLARE
    t   text;
    dir text;
    s   record;
BEGIN
    FOREACH t IN ARRAY ARRAY['gpu_metrics_1min', 'gpu_metrics_15min'] LOOP
        EXECUTE format('COMMENT ON TABLE public.%I IS %L', t,
            'Per-GPU rollups over buckets [t0, t0 + width) aligned like time_bucket(width, time). '
            'avg/min/max over non-NULL values; stddev is the sample standard deviation '
            '(PostgreSQL stddev()), NULL below two values. sample_count counts accepted samples.');
        FOREACH dir IN ARRAY ARRAY['tx', 'rx'] LOOP
            FOR s IN SELECT * FROM (VALUES
                    ('avg',    'averaged over the bucket'),
                    ('min',    'minimum sample in the bucket'),
                    ('max',    'maximum sample in the bucket'),
                    ('stddev', 'sample standard deviation over the bucket')) AS v(suffix, what)
            LOOP
                EXECUTE format('COMMENT ON COLUMN public.%I.%I IS %L', t,
                    format('pcie_%s_mbps_%s', dir, s.suffix),
                    format('PCIe %s throughput in megabytes per second (10^6 bytes/s), %s',
                           upper(dir), s.what));
            END LOOP;
        END LOOP;
        FOR s IN SELECT * FROM (VALUES
                ('ecc_sbe_delta',       'ecc_sbe_aggregate'),
                ('ecc_dbe_delta',       'ecc_dbe_aggregate'),
                ('retired_pages_delta', 'retired_pages_dbe')) AS v(col, counter)
        LOOP
            EXECUTE format('COMMENT ON COLUMN public.%I.%I IS %L', t, s.col,
                format('Boundary-safe increase of %s in the bucket: last value in the bucket '
                       'minus the last value before it (a GPU''s first bucket: last minus first); '
                       'a decrease is a counter reset and the new value counts as the increase. '
                       'Deltas of consecutive buckets add up to the counter''s total increase '
                       '(unlike MAX - MIN per bucket). NULL when the bucket has no value.',
                       s.counter));
        END LOOP;
        EXECUTE format('COMMENT ON COLUMN public.%I.throttle_events IS %L', t,
            'Samples with throttle_reasons <> 0');
        EXECUTE format('COMMENT ON COLUMN public.%I.thermal_throttle_events IS %L', t,
            'Samples with a thermal clock-event bit: (throttle_reasons & 96) <> 0, SW thermal 0x20 | HW thermal 0x40');
        EXECUTE format('COMMENT ON COLUMN public.%I.power_throttle_events IS %L', t,
            'Samples with a power clock-event bit: (throttle_reasons & 136) <> 0, HW slowdown 0x08 | HW power brake 0x80');
        EXECUTE format('COMMENT ON COLUMN public.%I.power_cap_events IS %L', t,
            'Samples with the SW power-cap bit: (throttle_reasons & 4) <> 0 (informational, not a fault)');
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------
-- gpu_assets: one row per GPU, identity and free-form tags.
-- ---------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.gpu_assets (
    gpu_uuid    text        PRIMARY KEY,
    hostname    text,
    pci_bus_id  text,
    gpu_model   text,
    rack_id     text,
    cluster_id  text,
    datacenter  text,
    first_seen  timestamptz,
    last_seen   timestamptz,
    tags        jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS gpu_assets_tags_idx ON public.gpu_assets USING gin (tags);

-- ---------------------------------------------------------------------------------
-- gpu_health_scores: per GPU per UTC day (time = the day's start), HEALTH_MODEL.md.
-- ---------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.gpu_health_scores (
    time                    timestamptz      NOT NULL,
    gpu_uuid                text             NOT NULL,
    hostname                text             NOT NULL,
    gpu_model               text,
    grade                   text             NOT NULL,
    top_factor              text,
    degradation_factors     text             NOT NULL,
    scoring_version         text             NOT NULL,
    overall_score           double precision NOT NULL,
    thermal_score           double precision NOT NULL,
    power_score             double precision NOT NULL,
    memory_score            double precision NOT NULL,
    performance_score       double precision NOT NULL,
    reliability_score       double precision NOT NULL,
    score_delta_7d          double precision,
    score_delta_30d         double precision,
    degradation_rate        double precision,
    coverage                double precision,
    longest_gap_s           double precision,
    gpu_temp_p95            double precision,
    gpu_temp_max            double precision,
    memory_temp_p95         double precision,
    power_p95               double precision,
    thermal_throttle_share  double precision,
    power_brake_share       double precision,
    throttled_share         double precision,
    loaded_sm_clock_ratio   double precision,
    invalid_share           double precision,
    sample_count            bigint           NOT NULL,
    ecc_sbe_increase        bigint,
    ecc_dbe_increase        bigint,
    retired_pages_increase  bigint,
    PRIMARY KEY (time, gpu_uuid)
);
SELECT create_hypertable('public.gpu_health_scores', by_range('time', INTERVAL '30 days'),
                         create_default_indexes => false, if_not_exists => true);
CREATE INDEX IF NOT EXISTS gpu_health_scores_gpu_uuid_time_idx
    ON public.gpu_health_scores (gpu_uuid, time DESC);
CREATE INDEX IF NOT EXISTS gpu_health_scores_grade_time_idx
    ON public.gpu_health_scores (grade, time DESC);
COMMENT ON TABLE public.gpu_health_scores IS
    'Daily health score per GPU; time is the UTC day start. Model: HEALTH_MODEL.md.';
COMMENT ON COLUMN public.gpu_health_scores.degradation_factors IS
    'JSON text: each signal''s points, value and thresholds (cast with ::jsonb to query)';

-- ---------------------------------------------------------------------------------
-- gpu_failure_predictions: one row per (time, GPU, model).
-- ---------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.gpu_failure_predictions (
    time                    timestamptz      NOT NULL,
    gpu_uuid                text             NOT NULL,
    model_name              text             NOT NULL,
    model_version           text,
    p_fail_7d               double precision,
    p_fail_30d              double precision,
    p_fail_90d              double precision,
    hazard_ratio            double precision,
    predicted_failure_type  text,
    estimated_ttf_days      double precision,
    confidence              double precision,
    feature_importance      jsonb,
    PRIMARY KEY (time, gpu_uuid, model_name)
);
SELECT create_hypertable('public.gpu_failure_predictions', by_range('time', INTERVAL '30 days'),
                         create_default_indexes => false, if_not_exists => true);
CREATE INDEX IF NOT EXISTS gpu_failure_predictions_gpu_uuid_time_idx
    ON public.gpu_failure_predictions (gpu_uuid, time DESC);

-- ---------------------------------------------------------------------------------
-- gpu_metrics_dead_letters: messages that cannot be used, with their original bytes
-- and source position. A plain table: low volume, keyed by the source position.
-- ---------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.gpu_metrics_dead_letters (
    reason      text        NOT NULL,
    detail      text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    gpu_uuid    text,
    time        timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset", reason)
);
CREATE INDEX IF NOT EXISTS gpu_metrics_dead_letters_received_at_idx
    ON public.gpu_metrics_dead_letters (received_at DESC);
COMMENT ON TABLE public.gpu_metrics_dead_letters IS
    'Unusable input messages (reason, detail, original key/value bytes, source position); '
    'events beyond the late horizon are also stored raw and dead-lettered as too_late.';

-- ---------------------------------------------------------------------------------
-- gpu_health.consumed_offsets: the next Kafka offset to read per (group, topic,
-- partition), written in the same transaction as the rows it covers.
-- ---------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS gpu_health.consumed_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
COMMENT ON TABLE gpu_health.consumed_offsets IS
    'Next offset to consume per consumer group, topic and partition; committed in the same '
    'transaction as the rows it covers (effectively-once). Kafka''s own commits are for lag '
    'monitoring only.';
