//! The `gpu_metrics` row: column names, Arrow types and physical ranges.
//!
//! One table of metric columns drives decoding (flat names, nested paths), validation
//! (physical ranges) and the Arrow schema, so a column is added in one place.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// How a metric column is typed in Arrow and in TimescaleDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Float,
    Int,
    Bool,
}

/// One numeric column of `gpu_metrics`.
#[derive(Debug, Clone, Copy)]
pub struct MetricColumn {
    /// Column name, also the field name in the flat input shape.
    pub name: &'static str,
    /// Path in the nested collector event (section, field).
    pub nested: (&'static str, &'static str),
    pub kind: Kind,
    /// Inclusive physical range; outside it the value is stored as NULL.
    pub min: f64,
    pub max: f64,
    /// Factor from the nested field's unit to the column's unit (MiB -> bytes).
    pub nested_scale: f64,
}

const fn col(
    name: &'static str,
    nested: (&'static str, &'static str),
    kind: Kind,
    min: f64,
    max: f64,
) -> MetricColumn {
    MetricColumn {
        name,
        nested,
        kind,
        min,
        max,
        nested_scale: 1.0,
    }
}

const MIB: f64 = 1_048_576.0;
/// Counters are non-negative; 2^53 keeps them exact in a double.
const COUNTER_MAX: f64 = 9_007_199_254_740_992.0;
/// Frame buffer sizes up to 64 TiB (no GPU is near; guards against garbage).
const FB_MAX: f64 = 70_368_744_177_664.0;

/// A frame-buffer column: bytes in the table, MiB in the nested `memory` section.
const fn fb_col(name: &'static str, nested_field: &'static str) -> MetricColumn {
    MetricColumn {
        nested_scale: MIB,
        ..col(name, ("memory", nested_field), Kind::Int, 0.0, FB_MAX)
    }
}

/// The metric columns in table order. Ranges: DESIGN 2.2 (temperatures -40..150 C,
/// power 0..2,000 W, ratios 0..1, percentages 0..100, counters >= 0).
pub const METRICS: &[MetricColumn] = &[
    col(
        "gpu_temp",
        ("health", "gpu_temp_c"),
        Kind::Float,
        -40.0,
        150.0,
    ),
    col(
        "memory_temp",
        ("health", "memory_temp_c"),
        Kind::Float,
        -40.0,
        150.0,
    ),
    col(
        "power_usage",
        ("health", "power_usage_w"),
        Kind::Float,
        0.0,
        2000.0,
    ),
    col(
        "throttle_reasons",
        ("health", "throttle_reasons"),
        Kind::Int,
        0.0,
        4_294_967_295.0,
    ),
    fb_col("fb_used_bytes", "fb_used_mib"),
    fb_col("fb_free_bytes", "fb_free_mib"),
    fb_col("fb_total_bytes", "fb_total_mib"),
    col(
        "memory_utilization",
        ("memory", "memory_utilization_pct"),
        Kind::Float,
        0.0,
        100.0,
    ),
    col(
        "ecc_sbe_volatile",
        ("memory", "ecc_sbe_volatile"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    col(
        "ecc_dbe_volatile",
        ("memory", "ecc_dbe_volatile"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    col(
        "ecc_sbe_aggregate",
        ("memory", "ecc_sbe_aggregate"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    col(
        "ecc_dbe_aggregate",
        ("memory", "ecc_dbe_aggregate"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    col(
        "retired_pages_dbe",
        ("memory", "retired_pages_dbe"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    col(
        "sm_active",
        ("performance", "sm_active"),
        Kind::Float,
        0.0,
        1.0,
    ),
    col(
        "sm_occupancy",
        ("performance", "sm_occupancy"),
        Kind::Float,
        0.0,
        1.0,
    ),
    col(
        "tensor_active",
        ("performance", "tensor_active"),
        Kind::Float,
        0.0,
        1.0,
    ),
    col(
        "dram_active",
        ("performance", "dram_active"),
        Kind::Float,
        0.0,
        1.0,
    ),
    col(
        "pcie_tx_bytes_per_sec",
        ("performance", "pcie_tx_bytes_per_sec"),
        Kind::Float,
        0.0,
        1e12,
    ),
    col(
        "pcie_rx_bytes_per_sec",
        ("performance", "pcie_rx_bytes_per_sec"),
        Kind::Float,
        0.0,
        1e12,
    ),
    col(
        "sm_clock_mhz",
        ("clocks", "sm_clock_mhz"),
        Kind::Int,
        0.0,
        10_000.0,
    ),
    col(
        "mem_clock_mhz",
        ("clocks", "mem_clock_mhz"),
        Kind::Int,
        0.0,
        20_000.0,
    ),
    col(
        "gpu_utilization",
        ("utilization", "gpu_utilization_pct"),
        Kind::Float,
        0.0,
        100.0,
    ),
    col(
        "mem_copy_utilization",
        ("utilization", "mem_copy_utilization_pct"),
        Kind::Float,
        0.0,
        100.0,
    ),
    col(
        "collection_latency_ms",
        ("collection", "latency_ms"),
        Kind::Float,
        0.0,
        3_600_000.0,
    ),
    // Optional DCGM fields (393-396, 230, 240, 241, 202).
    col(
        "remapped_rows_correctable",
        ("memory", "remapped_rows_correctable"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    col(
        "remapped_rows_uncorrectable",
        ("memory", "remapped_rows_uncorrectable"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    col(
        "row_remap_pending",
        ("memory", "row_remap_pending"),
        Kind::Bool,
        0.0,
        1.0,
    ),
    col(
        "row_remap_failure",
        ("memory", "row_remap_failure"),
        Kind::Bool,
        0.0,
        1.0,
    ),
    col("xid", ("health", "xid"), Kind::Int, 0.0, 1_000_000.0),
    col(
        "thermal_violation_ns",
        ("health", "thermal_violation_ns"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    col(
        "power_violation_ns",
        ("health", "power_violation_ns"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    col(
        "pcie_replay_counter",
        ("pcie", "replay_counter"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
    // The GPU's own limits (DESIGN 2.1), preferred by the health model over its table.
    // Enforced power limit: nvidia-smi `enforced.power.limit`, DCGM 160.
    col(
        "power_limit",
        ("health", "power_limit_w"),
        Kind::Float,
        0.0,
        2000.0,
    ),
    // Slowdown / shutdown temperatures: nvidia-smi -q, DCGM 158 / 159.
    col(
        "slowdown_temp",
        ("health", "slowdown_temp_c"),
        Kind::Float,
        0.0,
        150.0,
    ),
    col(
        "shutdown_temp",
        ("health", "shutdown_temp_c"),
        Kind::Float,
        0.0,
        150.0,
    ),
    // Headroom to the GPU's T.Limit, C: nvidia-smi `temperature.gpu.tlimit` (T.Limit
    // GPUs slow down at -2 C per nvidia-smi -q); negative when over the limit.
    col(
        "gpu_temp_tlimit",
        ("health", "gpu_temp_tlimit_c"),
        Kind::Float,
        -100.0,
        150.0,
    ),
    // Memory max operating temperature: nvidia-smi -q, DCGM 151.
    col(
        "memory_max_op_temp",
        ("health", "memory_max_op_temp_c"),
        Kind::Float,
        0.0,
        150.0,
    ),
    // Maximum SM clock: nvidia-smi `clocks.max.sm`, DCGM 113.
    col(
        "max_sm_clock_mhz",
        ("gpu", "max_sm_clock_mhz"),
        Kind::Int,
        0.0,
        10_000.0,
    ),
    // Memory banks with no spare row left (nvidia-smi `remapped_rows.histogram.none`).
    col(
        "remap_banks_exhausted",
        ("memory", "remap_banks_exhausted"),
        Kind::Int,
        0.0,
        COUNTER_MAX,
    ),
];

/// Number of metric columns.
pub const N_METRICS: usize = METRICS.len();

/// Index of a metric column by name, at compile time where used in constants.
pub const fn metric_index(name: &str) -> usize {
    let mut i = 0;
    while i < METRICS.len() {
        if str_eq(METRICS[i].name, name) {
            return i;
        }
        i += 1;
    }
    panic!("unknown metric column");
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

pub const GPU_TEMP: usize = metric_index("gpu_temp");
pub const MEMORY_TEMP: usize = metric_index("memory_temp");
pub const POWER: usize = metric_index("power_usage");
pub const THROTTLE: usize = metric_index("throttle_reasons");
#[cfg(test)]
pub const FB_USED: usize = metric_index("fb_used_bytes");
pub const ECC_DBE_VOLATILE: usize = metric_index("ecc_dbe_volatile");
pub const ECC_SBE_AGG: usize = metric_index("ecc_sbe_aggregate");
pub const ECC_DBE_AGG: usize = metric_index("ecc_dbe_aggregate");
pub const RETIRED_PAGES: usize = metric_index("retired_pages_dbe");
pub const SM_ACTIVE: usize = metric_index("sm_active");
pub const SM_CLOCK: usize = metric_index("sm_clock_mhz");
pub const REMAP_PENDING: usize = metric_index("row_remap_pending");
pub const REMAP_FAILURE: usize = metric_index("row_remap_failure");
pub const XID: usize = metric_index("xid");
pub const REMAPPED_CORRECTABLE: usize = metric_index("remapped_rows_correctable");
pub const REMAPPED_UNCORRECTABLE: usize = metric_index("remapped_rows_uncorrectable");
pub const THERMAL_VIOLATION: usize = metric_index("thermal_violation_ns");
pub const POWER_VIOLATION: usize = metric_index("power_violation_ns");
pub const PCIE_REPLAY: usize = metric_index("pcie_replay_counter");
pub const POWER_LIMIT: usize = metric_index("power_limit");
pub const SLOWDOWN_TEMP: usize = metric_index("slowdown_temp");
pub const GPU_TEMP_TLIMIT: usize = metric_index("gpu_temp_tlimit");
pub const MEMORY_MAX_OP_TEMP: usize = metric_index("memory_max_op_temp");
pub const MAX_SM_CLOCK: usize = metric_index("max_sm_clock_mhz");
pub const REMAP_BANKS_EXHAUSTED: usize = metric_index("remap_banks_exhausted");

/// Identity columns before the metrics, in table order.
pub const IDENTITY: &[&str] = &[
    "time",
    "gpu_uuid",
    "hostname",
    "pci_bus_id",
    "device_index",
    "gpu_model",
    "rack_id",
    "cluster_id",
    "datacenter",
];

/// Arrow type of event time everywhere: microseconds, UTC (PostgreSQL's resolution).
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow schema of a raw `gpu_metrics` batch.
pub fn raw_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("time", time_type(), false),
        Field::new("gpu_uuid", DataType::Utf8, false),
        Field::new("hostname", DataType::Utf8, false),
        Field::new("pci_bus_id", DataType::Utf8, true),
        Field::new("device_index", DataType::Int32, true),
        Field::new("gpu_model", DataType::Utf8, true),
        Field::new("rack_id", DataType::Utf8, true),
        Field::new("cluster_id", DataType::Utf8, true),
        Field::new("datacenter", DataType::Utf8, true),
    ];
    for m in METRICS {
        let dt = match m.kind {
            Kind::Float => DataType::Float64,
            Kind::Int => DataType::Int64,
            Kind::Bool => DataType::Boolean,
        };
        fields.push(Field::new(m.name, dt, true));
    }
    fields.push(Field::new("validation_passed", DataType::Boolean, false));
    fields.push(Field::new("validation_errors", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}
