-- 007_real_fleets: the GPU's own limits in the raw rows, and the health model's
-- coverage, lifecycle and limits in the score rows (issue 13, docs/health-model.md).
--
-- New columns are appended (ADD COLUMN puts them at the end of a table); the sinks
-- COPY and upsert by column name, so the Arrow schemas may order them differently.
-- One ALTER per column: a hypertable with compression enabled (timescale edition)
-- accepts a single ADD COLUMN of a nullable column without default per statement.

ALTER TABLE public.gpu_metrics ADD COLUMN IF NOT EXISTS power_limit double precision;
ALTER TABLE public.gpu_metrics ADD COLUMN IF NOT EXISTS slowdown_temp double precision;
ALTER TABLE public.gpu_metrics ADD COLUMN IF NOT EXISTS shutdown_temp double precision;
ALTER TABLE public.gpu_metrics ADD COLUMN IF NOT EXISTS gpu_temp_tlimit double precision;
ALTER TABLE public.gpu_metrics ADD COLUMN IF NOT EXISTS memory_max_op_temp double precision;
ALTER TABLE public.gpu_metrics ADD COLUMN IF NOT EXISTS max_sm_clock_mhz bigint;
ALTER TABLE public.gpu_metrics ADD COLUMN IF NOT EXISTS remap_banks_exhausted bigint;

COMMENT ON COLUMN public.gpu_metrics.power_limit IS
    'Enforced power limit, W (nvidia-smi enforced.power.limit, DCGM 160); optional';
COMMENT ON COLUMN public.gpu_metrics.slowdown_temp IS
    'GPU slowdown temperature, C (nvidia-smi -q, DCGM 158); optional';
COMMENT ON COLUMN public.gpu_metrics.shutdown_temp IS
    'GPU shutdown temperature, C (nvidia-smi -q, DCGM 159); optional';
COMMENT ON COLUMN public.gpu_metrics.gpu_temp_tlimit IS
    'Headroom to the GPU''s T.Limit, C (nvidia-smi temperature.gpu.tlimit; slowdown at -2 C); '
    'optional';
COMMENT ON COLUMN public.gpu_metrics.memory_max_op_temp IS
    'Memory max operating temperature, C (nvidia-smi -q, DCGM 151); optional';
COMMENT ON COLUMN public.gpu_metrics.max_sm_clock_mhz IS
    'Maximum SM clock, MHz (nvidia-smi clocks.max.sm, DCGM 113); optional';
COMMENT ON COLUMN public.gpu_metrics.remap_banks_exhausted IS
    'Memory banks with no spare row left (nvidia-smi remapped_rows.histogram.none); optional';

-- Scores: a `missing` day has no dimension scores, and an `insufficient_data` day only
-- those its data supports, so the score columns take NULL.
ALTER TABLE public.gpu_health_scores ALTER COLUMN overall_score DROP NOT NULL;
ALTER TABLE public.gpu_health_scores ALTER COLUMN thermal_score DROP NOT NULL;
ALTER TABLE public.gpu_health_scores ALTER COLUMN power_score DROP NOT NULL;
ALTER TABLE public.gpu_health_scores ALTER COLUMN memory_score DROP NOT NULL;
ALTER TABLE public.gpu_health_scores ALTER COLUMN performance_score DROP NOT NULL;
ALTER TABLE public.gpu_health_scores ALTER COLUMN reliability_score DROP NOT NULL;

ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS last_seen timestamptz;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS expected_span_s double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS covered_s double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS sample_interval_s double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS memory_temp_max double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS tlimit_headroom_p05 double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS thermal_violation_share double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS power_violation_share double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS pcie_replays_per_min double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS remapped_rows bigint;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS power_limit_w double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS slowdown_temp_c double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS max_sm_clock_mhz double precision;
ALTER TABLE public.gpu_health_scores ADD COLUMN IF NOT EXISTS limits_source text;

COMMENT ON COLUMN public.gpu_health_scores.grade IS
    'excellent, good, fair, degraded, poor, critical; insufficient_data (under the minimum '
    'of data, only supported dimensions scored); missing (silent for stale_after, no scores)';
COMMENT ON COLUMN public.gpu_health_scores.last_seen IS
    'Time of the GPU''s newest sample up to the end of this day';
COMMENT ON COLUMN public.gpu_health_scores.expected_span_s IS
    'Seconds of the day the GPU was expected to report: from the later of the day start and '
    'its first sample to the earlier of the day end and the watermark';
COMMENT ON COLUMN public.gpu_health_scores.covered_s IS
    'Seconds of the expected span covered by samples (each covers up to twice the interval)';
COMMENT ON COLUMN public.gpu_health_scores.sample_interval_s IS
    'The GPU''s sampling interval that day: the median spacing of its samples';
COMMENT ON COLUMN public.gpu_health_scores.pcie_replays_per_min IS
    'PCIe replay counter increase per minute of covered time';
COMMENT ON COLUMN public.gpu_health_scores.limits_source IS
    'Where the limits came from: sample, table:<row> or unknown, per limit';
