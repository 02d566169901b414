//! The `gpu_health_scores` row: schema and layout of scored days as Arrow batches.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::daily::ScoredDay;
use super::model::{GRADE_MISSING, SCORING_VERSION};
use crate::event::schema::time_type;
use crate::window::fleet::GpuInfo;

const FLOATS: [&str; 20] = [
    "overall_score",
    "thermal_score",
    "power_score",
    "memory_score",
    "performance_score",
    "reliability_score",
    "score_delta_7d",
    "score_delta_30d",
    "degradation_rate",
    "coverage",
    "longest_gap_s",
    "gpu_temp_p95",
    "gpu_temp_max",
    "memory_temp_p95",
    "power_p95",
    "thermal_throttle_share",
    "power_brake_share",
    "throttled_share",
    "loaded_sm_clock_ratio",
    "invalid_share",
];
const INTS: [&str; 4] = [
    "sample_count",
    "ecc_sbe_increase",
    "ecc_dbe_increase",
    "retired_pages_increase",
];
/// Added by migration 007 (coverage, lifecycle, limits); after `last_seen`.
const COLUMNS_V2: [&str; 9] = [
    "expected_span_s",
    "covered_s",
    "sample_interval_s",
    "memory_temp_max",
    "tlimit_headroom_p05",
    "thermal_violation_share",
    "power_violation_share",
    "pcie_replays_per_min",
    "remapped_rows",
];
const LIMITS: [&str; 3] = ["power_limit_w", "slowdown_temp_c", "max_sm_clock_mhz"];

pub fn scores_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("time", time_type(), false),
        Field::new("gpu_uuid", DataType::Utf8, false),
        Field::new("hostname", DataType::Utf8, false),
        Field::new("gpu_model", DataType::Utf8, true),
        Field::new("grade", DataType::Utf8, false),
        Field::new("top_factor", DataType::Utf8, true),
        Field::new("degradation_factors", DataType::Utf8, false),
        Field::new("scoring_version", DataType::Utf8, false),
    ];
    for f in FLOATS {
        fields.push(Field::new(f, DataType::Float64, true));
    }
    for (i, f) in INTS.iter().enumerate() {
        fields.push(Field::new(*f, DataType::Int64, i > 0));
    }
    fields.push(Field::new("last_seen", time_type(), true));
    for f in COLUMNS_V2 {
        let dt = if f == "remapped_rows" {
            DataType::Int64
        } else {
            DataType::Float64
        };
        fields.push(Field::new(f, dt, true));
    }
    for f in LIMITS {
        fields.push(Field::new(f, DataType::Float64, true));
    }
    fields.push(Field::new("limits_source", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// Lays scored days out as one batch.
pub fn scores_to_batch(days: &[ScoredDay], gpus: &[GpuInfo]) -> Result<RecordBatch, ArrowError> {
    let mut time = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut text: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    let mut floats: Vec<Float64Builder> = FLOATS.iter().map(|_| Float64Builder::new()).collect();
    let mut ints: Vec<Int64Builder> = INTS.iter().map(|_| Int64Builder::new()).collect();
    let mut last_seen = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut v2: Vec<Float64Builder> = (0..8).map(|_| Float64Builder::new()).collect();
    let mut remapped = Int64Builder::new();
    let mut limits: Vec<Float64Builder> = LIMITS.iter().map(|_| Float64Builder::new()).collect();
    let mut limits_source = StringBuilder::new();
    for d in days {
        let info = gpus.get(d.gpu as usize);
        let f = &d.features;
        let s = &d.score;
        let scored = s.grade != GRADE_MISSING;
        time.append_value(d.day_start_us);
        text[0].append_value(info.map_or("", |i| i.uuid.as_str()));
        text[1].append_value(info.map_or("", |i| i.hostname.as_str()));
        text[2].append_option(info.and_then(|i| i.model.as_deref()));
        text[3].append_value(s.grade);
        text[4].append_option(s.top_factor());
        text[5].append_value(s.factors_json());
        text[6].append_value(SCORING_VERSION);
        let values = [
            s.overall,
            s.thermal,
            s.power,
            s.memory,
            s.performance,
            s.reliability,
            d.delta_7d,
            d.delta_30d,
            d.degradation_rate,
            scored.then_some(f.coverage),
            scored.then_some(f.longest_gap_s),
            f.gpu_temp_p95,
            f.gpu_temp_max,
            f.memory_temp_p95,
            f.power_p95,
            f.thermal_share,
            f.power_fault_share,
            f.throttled_share,
            f.loaded_clock_ratio(),
            scored.then_some(f.invalid_share),
        ];
        for (b, v) in floats.iter_mut().zip(values) {
            b.append_option(v);
        }
        let iv = [
            Some(f.samples as i64),
            f.sbe_increase,
            f.dbe_increase,
            f.retired_increase,
        ];
        for (b, v) in ints.iter_mut().zip(iv) {
            b.append_option(v);
        }
        last_seen.append_option(f.last_seen_us);
        let values = [
            scored.then_some(f.expected_span_s),
            scored.then_some(f.covered_s),
            scored.then_some(f.interval_s),
            f.memory_temp_max,
            f.tlimit_headroom_p05,
            f.thermal_violation_share,
            f.power_violation_share,
            f.pcie_replays_per_min,
        ];
        for (b, v) in v2.iter_mut().zip(values) {
            b.append_option(v);
        }
        remapped.append_option(f.remapped_rows);
        let l = &f.limits;
        for (b, v) in limits
            .iter_mut()
            .zip([l.power_w, l.slowdown_c, l.max_sm_clock_mhz])
        {
            b.append_option(v.map(|l| l.value));
        }
        limits_source.append_option(scored.then(|| l.describe()));
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(time.finish())];
    columns.extend(text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(floats.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(ints.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(last_seen.finish()));
    columns.extend(v2.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(remapped.finish()));
    columns.extend(limits.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(limits_source.finish()));
    RecordBatch::try_new(scores_schema(), columns)
}
