//! The `gpu_health_scores` row: schema and layout of scored days as Arrow batches.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::daily::ScoredDay;
use super::model::SCORING_VERSION;
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
    for (i, f) in FLOATS.iter().enumerate() {
        fields.push(Field::new(*f, DataType::Float64, i >= 6));
    }
    for (i, f) in INTS.iter().enumerate() {
        fields.push(Field::new(*f, DataType::Int64, i > 0));
    }
    Arc::new(Schema::new(fields))
}

/// Lays scored days out as one batch.
pub fn scores_to_batch(days: &[ScoredDay], gpus: &[GpuInfo]) -> Result<RecordBatch, ArrowError> {
    let mut time = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut text: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    let mut floats: Vec<Float64Builder> = FLOATS.iter().map(|_| Float64Builder::new()).collect();
    let mut ints: Vec<Int64Builder> = INTS.iter().map(|_| Int64Builder::new()).collect();
    for d in days {
        let info = gpus.get(d.gpu as usize);
        let f = &d.features;
        let s = &d.score;
        time.append_value(d.day_start_us);
        text[0].append_value(info.map_or("", |i| i.uuid.as_str()));
        text[1].append_value(info.map_or("", |i| i.hostname.as_str()));
        text[2].append_option(info.and_then(|i| i.model.as_deref()));
        text[3].append_value(s.grade);
        text[4].append_option(s.top_factor());
        text[5].append_value(s.factors_json());
        text[6].append_value(SCORING_VERSION);
        let values = [
            Some(s.overall),
            Some(s.thermal),
            Some(s.power),
            Some(s.memory),
            Some(s.performance),
            Some(s.reliability),
            d.delta_7d,
            d.delta_30d,
            d.degradation_rate,
            Some(f.coverage),
            Some(f.longest_gap_s),
            f.gpu_temp_p95,
            f.gpu_temp_max,
            f.memory_temp_p95,
            f.power_p95,
            Some(f.thermal_share),
            Some(f.power_fault_share),
            Some(f.throttled_share),
            f.loaded_clock_ratio,
            Some(f.invalid_share),
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
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(time.finish())];
    columns.extend(text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(floats.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(ints.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    RecordBatch::try_new(scores_schema(), columns)
}
