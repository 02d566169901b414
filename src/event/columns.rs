//! Typed read access to a raw `gpu_metrics` batch by column, for the stages after
//! decoding (window admission, daily health features).

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};

use super::schema::{IDENTITY, Kind, METRICS};

/// One metric column, read as `f64`.
pub enum MetricColumnRef<'a> {
    Float(&'a datafusion::arrow::array::Float64Array),
    Int(&'a datafusion::arrow::array::Int64Array),
    Bool(&'a BooleanArray),
}

impl MetricColumnRef<'_> {
    #[inline]
    pub fn get(&self, row: usize) -> Option<f64> {
        match self {
            MetricColumnRef::Float(a) => a.is_valid(row).then(|| a.value(row)),
            MetricColumnRef::Int(a) => a.is_valid(row).then(|| a.value(row) as f64),
            MetricColumnRef::Bool(a) => a.is_valid(row).then(|| a.value(row) as u8 as f64),
        }
    }

    #[inline]
    pub fn get_i64(&self, row: usize) -> Option<i64> {
        match self {
            MetricColumnRef::Int(a) => a.is_valid(row).then(|| a.value(row)),
            other => other.get(row).map(|v| v as i64),
        }
    }
}

/// Borrowed views of a raw batch's columns.
pub struct RawColumns<'a> {
    pub time: &'a [i64],
    pub gpu_uuid: &'a StringArray,
    pub hostname: &'a StringArray,
    pub gpu_model: &'a StringArray,
    pub metrics: Vec<MetricColumnRef<'a>>,
    pub validation_passed: &'a BooleanArray,
}

impl<'a> RawColumns<'a> {
    /// Views a batch that has `raw_schema()`; panics only on a programming error
    /// (a batch of another schema), never on data.
    pub fn new(batch: &'a RecordBatch) -> Self {
        let base = IDENTITY.len();
        let metrics = METRICS
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let col = batch.column(base + i);
                match m.kind {
                    Kind::Float => MetricColumnRef::Float(col.as_primitive::<Float64Type>()),
                    Kind::Int => MetricColumnRef::Int(col.as_primitive::<Int64Type>()),
                    Kind::Bool => MetricColumnRef::Bool(col.as_boolean()),
                }
            })
            .collect();
        RawColumns {
            time: batch
                .column(0)
                .as_primitive::<TimestampMicrosecondType>()
                .values(),
            gpu_uuid: batch.column(1).as_string::<i32>(),
            hostname: batch.column(2).as_string::<i32>(),
            gpu_model: batch.column(5).as_string::<i32>(),
            metrics,
            validation_passed: batch.column(base + METRICS.len()).as_boolean(),
        }
    }
}
