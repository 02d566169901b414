//! The report query patterns, as SQL that PostgreSQL 15 (TimescaleDB) and DataFusion
//! (over the Parquet store) both run unchanged: the same text answers on both stores,
//! so the two cannot drift apart. Windows are anchored at the newest row of the table
//! they read, not at the wall clock, so a backfill of old telemetry reports the same
//! as a live fleet. The only parameter is the GPU UUID (`$1`); numbers are formatted
//! from parsed values.

/// One report and its options.
#[derive(Debug, Clone)]
pub enum Query {
    /// The newest raw samples: of one GPU (`limit` of them, within a week of its own
    /// newest), or the newest sample of every GPU that reported in the last 10 minutes
    /// of the fleet's data (a GPU silent for longer shows in `fleet`'s scores, not here).
    Latest { gpu: Option<String>, limit: u32 },
    /// Temperature per 15 minutes over `hours`: of one GPU, or across the fleet.
    Temperature { gpu: Option<String>, hours: u32 },
    /// GPUs per grade on the newest scored day, with their scores and stress.
    Fleet,
    /// Minutes whose peak reached `threshold_c`, or rose `rise_c` over the previous
    /// minute's mean, within `hours`.
    Spikes {
        threshold_c: f64,
        rise_c: f64,
        hours: u32,
        limit: u32,
    },
    /// ECC counter increases per GPU within `hours`, with rates per hour.
    Ecc { hours: u32, limit: u32 },
    /// Power and work per GPU within `hours`: utilisation per 100 W, least efficient first.
    Power { hours: u32, limit: u32 },
    /// The newest scored day's GPUs, steepest score decline first, with the failure
    /// probability.
    Degrading { limit: u32 },
    /// GPUs `missing` on the newest scored day (silent for `stale_after`), longest
    /// silent first, with when each was last seen.
    Missing { limit: u32 },
}

/// Sorts grades from best to worst (HEALTH_MODEL grades).
const GRADE_ORDER: &str = "CASE grade WHEN 'excellent' THEN 1 WHEN 'good' THEN 2 \
     WHEN 'fair' THEN 3 WHEN 'degraded' THEN 4 WHEN 'poor' THEN 5 WHEN 'critical' THEN 6 \
     WHEN 'insufficient_data' THEN 7 ELSE 8 END";

impl Query {
    /// The report's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Query::Latest { .. } => "latest",
            Query::Temperature { .. } => "temperature",
            Query::Fleet => "fleet",
            Query::Spikes { .. } => "spikes",
            Query::Ecc { .. } => "ecc",
            Query::Power { .. } => "power",
            Query::Degrading { .. } => "degrading",
            Query::Missing { .. } => "missing",
        }
    }

    /// The GPU UUID bound to `$1`, if the SQL uses it.
    pub fn gpu(&self) -> Option<&str> {
        match self {
            Query::Latest { gpu, .. } | Query::Temperature { gpu, .. } => gpu.as_deref(),
            _ => None,
        }
    }

    pub fn sql(&self) -> String {
        let gpu_filter = if self.gpu().is_some() {
            "AND gpu_uuid = $1"
        } else {
            ""
        };
        match self {
            Query::Latest { gpu, limit } => {
                // One GPU: a week back from its own newest row (the index on
                // (gpu_uuid, time) serves both). The fleet: 10 minutes back from the
                // fleet's newest row. Hours, not days: no calendar arithmetic.
                let (anchor, window, per_gpu) = match gpu {
                    Some(_) => (
                        "(SELECT max(time) FROM gpu_metrics WHERE gpu_uuid = $1)",
                        "168 hours",
                        *limit,
                    ),
                    None => ("(SELECT max(time) FROM gpu_metrics)", "10 minutes", 1),
                };
                format!(
                    "SELECT time, gpu_uuid, hostname, gpu_temp, memory_temp, power_usage,
                            gpu_utilization, sm_active,
                            CAST(fb_used_bytes / 1048576 AS BIGINT) AS fb_used_mib,
                            ecc_sbe_aggregate, ecc_dbe_aggregate, throttle_reasons,
                            validation_passed
                     FROM (SELECT *, row_number() OVER (PARTITION BY gpu_uuid ORDER BY time DESC) AS newest
                           FROM gpu_metrics
                           WHERE time >= {anchor} - INTERVAL '{window}'
                                 {gpu_filter}) s
                     WHERE newest <= {per_gpu}
                     ORDER BY gpu_uuid, time DESC"
                )
            }
            Query::Temperature { hours, .. } => format!(
                "SELECT time, count(*) AS gpus,
                        avg(gpu_temp_avg) AS gpu_temp_avg, max(gpu_temp_max) AS gpu_temp_max,
                        avg(memory_temp_avg) AS memory_temp_avg,
                        max(memory_temp_max) AS memory_temp_max,
                        CAST(sum(thermal_throttle_events) AS BIGINT) AS thermal_throttle_samples
                 FROM gpu_metrics_15min
                 WHERE time > (SELECT max(time) FROM gpu_metrics_15min) - INTERVAL '{hours} hours'
                       {gpu_filter}
                 GROUP BY time
                 ORDER BY time"
            ),
            Query::Fleet => format!(
                "SELECT time AS day, grade, count(*) AS gpus,
                        avg(overall_score) AS score_avg, min(overall_score) AS score_min,
                        avg(gpu_temp_p95) AS temp_p95_avg, max(gpu_temp_max) AS temp_max,
                        avg(throttled_share) AS throttled_share_avg,
                        CAST(sum(ecc_sbe_increase) AS BIGINT) AS ecc_sbe,
                        CAST(sum(ecc_dbe_increase) AS BIGINT) AS ecc_dbe,
                        min(last_seen) AS last_seen_oldest
                 FROM gpu_health_scores
                 WHERE time = (SELECT max(time) FROM gpu_health_scores)
                 GROUP BY time, grade
                 ORDER BY {GRADE_ORDER}"
            ),
            Query::Spikes {
                threshold_c,
                rise_c,
                hours,
                limit,
            } => format!(
                "SELECT time, gpu_uuid, hostname, gpu_temp_max, gpu_temp_avg, rise_c
                 FROM (SELECT time, gpu_uuid, hostname, gpu_temp_max, gpu_temp_avg,
                              gpu_temp_max - lag(gpu_temp_avg)
                                  OVER (PARTITION BY gpu_uuid ORDER BY time) AS rise_c
                       FROM gpu_metrics_1min
                       WHERE time > (SELECT max(time) FROM gpu_metrics_1min) - INTERVAL '{hours} hours') s
                 WHERE gpu_temp_max >= {threshold_c:?} OR rise_c >= {rise_c:?}
                 ORDER BY gpu_temp_max DESC, time, gpu_uuid
                 LIMIT {limit}"
            ),
            Query::Ecc { hours, limit } => format!(
                "SELECT gpu_uuid, max(hostname) AS hostname,
                        CAST(sum(ecc_sbe_delta) AS BIGINT) AS sbe,
                        CAST(sum(ecc_dbe_delta) AS BIGINT) AS dbe,
                        CAST(sum(retired_pages_delta) AS BIGINT) AS retired_pages,
                        CAST(sum(ecc_sbe_delta) AS DOUBLE PRECISION) / {hours}.0 AS sbe_per_hour,
                        CAST(sum(ecc_dbe_delta) AS DOUBLE PRECISION) / {hours}.0 AS dbe_per_hour,
                        max(ecc_dbe_volatile_max) AS dbe_volatile_max
                 FROM gpu_metrics_1min
                 WHERE time > (SELECT max(time) FROM gpu_metrics_1min) - INTERVAL '{hours} hours'
                 GROUP BY gpu_uuid
                 HAVING sum(ecc_sbe_delta) > 0 OR sum(ecc_dbe_delta) > 0
                        OR sum(retired_pages_delta) > 0
                 ORDER BY dbe DESC, retired_pages DESC, sbe DESC, gpu_uuid
                 LIMIT {limit}"
            ),
            Query::Power { hours, limit } => format!(
                "SELECT gpu_uuid, max(hostname) AS hostname,
                        avg(power_usage_avg) AS power_w_avg, max(power_usage_max) AS power_w_max,
                        avg(gpu_utilization_avg) AS utilization_avg,
                        avg(sm_active_avg) AS sm_active_avg,
                        100.0 * avg(gpu_utilization_avg) / avg(power_usage_avg) AS util_per_100w,
                        avg(power_usage_avg) * {hours}.0 / 1000.0 AS energy_kwh,
                        CAST(sum(power_throttle_events) AS BIGINT) AS power_throttle_samples
                 FROM gpu_metrics_15min
                 WHERE time > (SELECT max(time) FROM gpu_metrics_15min) - INTERVAL '{hours} hours'
                 GROUP BY gpu_uuid
                 HAVING avg(power_usage_avg) > 0
                 ORDER BY util_per_100w, gpu_uuid
                 LIMIT {limit}"
            ),
            Query::Degrading { limit } => format!(
                "SELECT s.time AS day, s.gpu_uuid, s.hostname, s.grade, s.overall_score,
                        s.degradation_rate, s.score_delta_7d, s.top_factor,
                        p.p_fail_30d, p.predicted_failure_type
                 FROM gpu_health_scores s
                 LEFT JOIN gpu_failure_predictions p
                        ON p.gpu_uuid = s.gpu_uuid AND p.time = s.time
                           AND p.model_name = '{model}'
                 WHERE s.time = (SELECT max(time) FROM gpu_health_scores)
                   AND s.overall_score IS NOT NULL
                 ORDER BY s.degradation_rate ASC NULLS LAST, s.overall_score ASC, s.gpu_uuid
                 LIMIT {limit}",
                model = crate::health::predict::MODEL_NAME
            ),
            Query::Missing { limit } => format!(
                "SELECT time AS day, gpu_uuid, hostname, gpu_model, last_seen
                 FROM gpu_health_scores
                 WHERE grade = 'missing'
                   AND time = (SELECT max(time) FROM gpu_health_scores)
                 ORDER BY last_seen, gpu_uuid
                 LIMIT {limit}"
            ),
        }
    }
}
