//! Per-batch partial aggregates in DataFusion: one SQL GROUP BY over the admitted rows
//! of a batch gives, per (GPU, minute), the mergeable state of every rolled-up metric
//! (count, mean, population variance, min, max) and the event counts. The operator
//! merges these partials into its open windows.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, UInt32Type,
};
use datafusion::error::Result as DfResult;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::rollup::{BucketState, N_ROLLUP};
use super::stats::{EventCounts, MetricStats};
use crate::event::clock_events::{BIT_SW_POWER_CAP, POWER_FAULT_BITS, THERMAL_BITS};

/// Schema of the operator's input to DataFusion.
pub fn input_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("gpu_id", DataType::UInt32, false),
        Field::new("bucket", DataType::Int64, false),
    ];
    for i in 0..N_ROLLUP {
        fields.push(Field::new(format!("m{i}"), DataType::Float64, true));
    }
    fields.push(Field::new("thr", DataType::Int64, true));
    fields.push(Field::new("dbev", DataType::Int64, true));
    fields.push(Field::new("valid", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

fn partial_sql() -> String {
    let mut sql = format!(
        "SELECT gpu_id, bucket, count(*) AS n, \
         sum(CASE WHEN valid THEN 0 ELSE 1 END) AS invalid, \
         sum(CASE WHEN thr <> 0 THEN 1 ELSE 0 END) AS throttle, \
         sum(CASE WHEN (thr & {THERMAL_BITS}) <> 0 THEN 1 ELSE 0 END) AS thermal, \
         sum(CASE WHEN (thr & {POWER_FAULT_BITS}) <> 0 THEN 1 ELSE 0 END) AS power, \
         sum(CASE WHEN (thr & {BIT_SW_POWER_CAP}) <> 0 THEN 1 ELSE 0 END) AS power_cap, \
         max(dbev) AS dbev_max"
    );
    for i in 0..N_ROLLUP {
        sql.push_str(&format!(
            ", count(m{i}), avg(m{i}), var_pop(m{i}), min(m{i}), max(m{i})"
        ));
    }
    sql.push_str(" FROM w GROUP BY gpu_id, bucket");
    sql
}

/// One (GPU, bucket) partial.
pub struct Partial {
    pub gpu: u32,
    pub bucket_start_us: i64,
    pub state: BucketState,
}

/// Runs the partial aggregation; reuses one DataFusion session.
pub struct PartialAggregator {
    ctx: SessionContext,
    sql: String,
}

impl Default for PartialAggregator {
    fn default() -> Self {
        // One partition: the operator parallelises by batch, not inside a query.
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_batch_size(64 * 1024);
        PartialAggregator {
            ctx: SessionContext::new_with_config(config),
            sql: partial_sql(),
        }
    }
}

impl PartialAggregator {
    pub async fn aggregate(&self, input: RecordBatch) -> DfResult<Vec<Partial>> {
        if input.num_rows() == 0 {
            return Ok(Vec::new());
        }
        self.ctx.register_batch("w", input)?;
        let result = self.ctx.sql(&self.sql).await;
        let batches = match result {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        };
        self.ctx.deregister_table("w")?;
        let mut out = Vec::new();
        for b in batches? {
            read_partials(&b, &mut out);
        }
        Ok(out)
    }
}

fn i64_at(col: &ArrayRef, row: usize) -> Option<i64> {
    let a = col.as_primitive::<Int64Type>();
    a.is_valid(row).then(|| a.value(row))
}

fn f64_at(col: &ArrayRef, row: usize) -> f64 {
    let a = col.as_primitive::<Float64Type>();
    if a.is_valid(row) { a.value(row) } else { 0.0 }
}

fn read_partials(b: &RecordBatch, out: &mut Vec<Partial>) {
    let gpu = b.column(0).as_primitive::<UInt32Type>();
    let bucket = b.column(1).as_primitive::<Int64Type>();
    let c = |i: usize| b.column(i);
    for row in 0..b.num_rows() {
        let mut state = BucketState {
            counts: EventCounts {
                samples: i64_at(c(2), row).unwrap_or(0) as u64,
                invalid: i64_at(c(3), row).unwrap_or(0) as u64,
                throttle: i64_at(c(4), row).unwrap_or(0) as u64,
                thermal: i64_at(c(5), row).unwrap_or(0) as u64,
                power: i64_at(c(6), row).unwrap_or(0) as u64,
                power_cap: i64_at(c(7), row).unwrap_or(0) as u64,
                dbe_volatile_max: i64_at(c(8), row),
            },
            ..Default::default()
        };
        for (m, stats) in state.stats.iter_mut().enumerate() {
            let base = 9 + m * 5;
            let n = i64_at(c(base), row).unwrap_or(0) as u64;
            *stats = MetricStats::from_partial(
                n,
                f64_at(c(base + 1), row),
                f64_at(c(base + 2), row),
                f64_at(c(base + 3), row),
                f64_at(c(base + 4), row),
            );
        }
        out.push(Partial {
            gpu: gpu.value(row),
            bucket_start_us: bucket.value(row),
            state,
        });
    }
}

/// Builds the DataFusion input from column vectors.
pub struct InputColumns {
    pub gpu_id: Vec<u32>,
    pub bucket: Vec<i64>,
    pub metrics: Vec<Vec<Option<f64>>>,
    pub thr: Vec<Option<i64>>,
    pub dbev: Vec<Option<i64>>,
    pub valid: Vec<bool>,
}

impl InputColumns {
    pub fn with_capacity(n: usize) -> Self {
        InputColumns {
            gpu_id: Vec::with_capacity(n),
            bucket: Vec::with_capacity(n),
            metrics: (0..N_ROLLUP).map(|_| Vec::with_capacity(n)).collect(),
            thr: Vec::with_capacity(n),
            dbev: Vec::with_capacity(n),
            valid: Vec::with_capacity(n),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.gpu_id.is_empty()
    }

    pub fn into_batch(self) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(self.gpu_id)),
            Arc::new(Int64Array::from(self.bucket)),
        ];
        for m in self.metrics {
            cols.push(Arc::new(Float64Array::from(m)));
        }
        cols.push(Arc::new(Int64Array::from(self.thr)));
        cols.push(Arc::new(Int64Array::from(self.dbev)));
        cols.push(Arc::new(BooleanArray::from(self.valid)));
        RecordBatch::try_new(input_schema(), cols)
    }
}
