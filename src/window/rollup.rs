//! The rollup row (`gpu_metrics_1min` and `gpu_metrics_15min` share one layout): which
//! metrics are rolled up, the output schema, and the builder that lays emitted buckets
//! out as Arrow batches.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::counter::{CounterValues, N_COUNTERS};
use super::stats::{EventCounts, MetricStats};
use crate::event::schema::{metric_index, time_type};

/// A gauge metric rolled up with avg/min/max/stddev.
#[derive(Debug, Clone, Copy)]
pub struct RollupMetric {
    /// Output column prefix: `<prefix>_avg`, `_min`, `_max`, `_stddev`.
    pub prefix: &'static str,
    /// Source raw column.
    pub source: usize,
    /// Multiplier from the raw unit to the rollup unit.
    pub scale: f64,
}

const fn rm(prefix: &'static str, source: &'static str, scale: f64) -> RollupMetric {
    RollupMetric {
        prefix,
        source: metric_index(source),
        scale,
    }
}

/// Gauges in output order. PCIe throughput: raw bytes/s -> megabytes/s (10^6 bytes/s).
pub const ROLLUP_METRICS: &[RollupMetric] = &[
    rm("gpu_temp", "gpu_temp", 1.0),
    rm("memory_temp", "memory_temp", 1.0),
    rm("power_usage", "power_usage", 1.0),
    rm("gpu_utilization", "gpu_utilization", 1.0),
    rm("memory_utilization", "memory_utilization", 1.0),
    rm("mem_copy_utilization", "mem_copy_utilization", 1.0),
    rm("sm_active", "sm_active", 1.0),
    rm("sm_occupancy", "sm_occupancy", 1.0),
    rm("tensor_active", "tensor_active", 1.0),
    rm("dram_active", "dram_active", 1.0),
    rm("fb_used_bytes", "fb_used_bytes", 1.0),
    rm("sm_clock_mhz", "sm_clock_mhz", 1.0),
    rm("mem_clock_mhz", "mem_clock_mhz", 1.0),
    rm("pcie_tx_mbps", "pcie_tx_bytes_per_sec", 1e-6),
    rm("pcie_rx_mbps", "pcie_rx_bytes_per_sec", 1e-6),
];
pub const N_ROLLUP: usize = ROLLUP_METRICS.len();

pub const STAT_SUFFIXES: [&str; 4] = ["avg", "min", "max", "stddev"];
pub const DELTA_COLUMNS: [&str; N_COUNTERS] =
    ["ecc_sbe_delta", "ecc_dbe_delta", "retired_pages_delta"];
pub const COUNT_COLUMNS: [&str; 7] = [
    "ecc_dbe_volatile_max",
    "throttle_events",
    "thermal_throttle_events",
    "power_throttle_events",
    "power_cap_events",
    "sample_count",
    "invalid_sample_count",
];

/// Mergeable state of one (GPU, bucket).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct BucketState {
    pub stats: [MetricStats; N_ROLLUP],
    pub counts: EventCounts,
    /// Counter deltas as last emitted (to adjust daily totals on re-emission).
    pub emitted_deltas: Option<CounterValues>,
}

impl BucketState {
    pub fn merge(&mut self, o: &BucketState) {
        for (a, b) in self.stats.iter_mut().zip(o.stats.iter()) {
            a.merge(b);
        }
        self.counts.merge(&o.counts);
    }
}

/// Output schema of both rollup tables.
pub fn rollup_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("time", time_type(), false),
        Field::new("gpu_uuid", DataType::Utf8, false),
        Field::new("hostname", DataType::Utf8, false),
    ];
    for m in ROLLUP_METRICS {
        for s in STAT_SUFFIXES {
            fields.push(Field::new(
                format!("{}_{}", m.prefix, s),
                DataType::Float64,
                true,
            ));
        }
    }
    for d in DELTA_COLUMNS {
        fields.push(Field::new(d, DataType::Int64, true));
    }
    for (i, c) in COUNT_COLUMNS.iter().enumerate() {
        // Only ecc_dbe_volatile_max may be NULL.
        fields.push(Field::new(*c, DataType::Int64, i == 0));
    }
    Arc::new(Schema::new(fields))
}

/// Lays out emitted rollup rows.
pub struct RollupBuilder {
    time: TimestampMicrosecondBuilder,
    gpu_uuid: StringBuilder,
    hostname: StringBuilder,
    stats: Vec<Float64Builder>,
    deltas: Vec<Int64Builder>,
    counts: Vec<Int64Builder>,
    rows: usize,
}

impl Default for RollupBuilder {
    fn default() -> Self {
        RollupBuilder {
            time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            gpu_uuid: StringBuilder::new(),
            hostname: StringBuilder::new(),
            stats: (0..N_ROLLUP * 4).map(|_| Float64Builder::new()).collect(),
            deltas: (0..N_COUNTERS).map(|_| Int64Builder::new()).collect(),
            counts: (0..COUNT_COLUMNS.len())
                .map(|_| Int64Builder::new())
                .collect(),
            rows: 0,
        }
    }
}

impl RollupBuilder {
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn append(
        &mut self,
        start_us: i64,
        gpu_uuid: &str,
        hostname: &str,
        state: &BucketState,
        deltas: &CounterValues,
    ) {
        self.time.append_value(start_us);
        self.gpu_uuid.append_value(gpu_uuid);
        self.hostname.append_value(hostname);
        for (i, s) in state.stats.iter().enumerate() {
            self.stats[i * 4].append_option(s.avg());
            self.stats[i * 4 + 1].append_option(s.min());
            self.stats[i * 4 + 2].append_option(s.max());
            self.stats[i * 4 + 3].append_option(s.stddev());
        }
        for (b, d) in self.deltas.iter_mut().zip(deltas.iter()) {
            b.append_option(*d);
        }
        let c = &state.counts;
        self.counts[0].append_option(c.dbe_volatile_max);
        for (b, v) in self.counts[1..].iter_mut().zip([
            c.throttle,
            c.thermal,
            c.power,
            c.power_cap,
            c.samples,
            c.invalid,
        ]) {
            b.append_value(v as i64);
        }
        self.rows += 1;
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.gpu_uuid.finish()),
            Arc::new(self.hostname.finish()),
        ];
        columns.extend(
            self.stats
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.extend(
            self.deltas
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.extend(
            self.counts
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        self.rows = 0;
        RecordBatch::try_new(rollup_schema(), columns)
    }
}
