//! Rendering of one sample as message text in either input shape (DESIGN 2.1): the nested
//! collector event or the flat `gpu_metrics` row. Writes straight into a reused `String`
//! with hand-rolled number formatting, and can spoil one metric (bad-data injection).

use super::fleet::{GpuInfo, Shape, TimeStyle};

const MIB: u64 = 1_048_576;

/// Row-remapping state (DCGM fields 393-396), carried only by GPUs that report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remap {
    pub correctable: u32,
    pub uncorrectable: u32,
    pub pending: bool,
    pub failure: bool,
}

/// One sample's metrics, kept as integers in the units they are written in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub gpu_temp: i32,
    pub mem_temp: i32,
    /// Power in tenths of a watt.
    pub power_dw: i64,
    pub throttle: u32,
    pub fb_used_mib: u64,
    pub fb_total_mib: u64,
    pub mem_util: u32,
    pub sbe_volatile: i64,
    pub dbe_volatile: i64,
    pub sbe_aggregate: i64,
    pub dbe_aggregate: i64,
    pub retired_pages_dbe: i64,
    /// Ratios in hundredths (82 = 0.82).
    pub sm_active: u32,
    pub sm_occupancy: u32,
    pub tensor_active: u32,
    pub dram_active: u32,
    pub pcie_tx: u64,
    pub pcie_rx: u64,
    pub sm_clock: u32,
    pub mem_clock: u32,
    pub util: u32,
    pub copy_util: u32,
    pub latency_ms: u32,
    pub xid: Option<u32>,
    pub thermal_violation_ns: Option<u64>,
    pub power_violation_ns: Option<u64>,
    pub remap: Option<Remap>,
    pub pcie_replay: Option<u64>,
}

/// A metric that bad-data injection may spoil.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    GpuTemp,
    MemoryTemp,
    PowerUsage,
    SmActive,
    SmClock,
    GpuUtilization,
    EccSbeAggregate,
}

impl Field {
    /// The `gpu_metrics` column name (as used by the flat shape).
    pub fn column(self) -> &'static str {
        match self {
            Field::GpuTemp => "gpu_temp",
            Field::MemoryTemp => "memory_temp",
            Field::PowerUsage => "power_usage",
            Field::SmActive => "sm_active",
            Field::SmClock => "sm_clock_mhz",
            Field::GpuUtilization => "gpu_utilization",
            Field::EccSbeAggregate => "ecc_sbe_aggregate",
        }
    }

    /// The physically impossible value an `out_of_range` injection writes.
    fn out_of_range_literal(self) -> &'static str {
        match self {
            Field::GpuTemp | Field::MemoryTemp => "500",
            Field::PowerUsage => "-5.0",
            Field::SmActive => "1.7",
            Field::SmClock => "-1",
            Field::GpuUtilization => "250",
            Field::EccSbeAggregate => "-1",
        }
    }
}

/// How one field of a sample is spoiled, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoil {
    None,
    /// The number sent as a JSON string, e.g. `"64"`.
    WrongType(Field),
    /// The string `"NaN"` (true) or `"Infinity"` (false).
    NotFinite(Field, bool),
    OutOfRange(Field),
}

/// The time a message carries.
#[derive(Debug, Clone, Copy)]
pub enum TimeRepr<'a> {
    /// A real time: RFC 3339 text and epoch milliseconds; the host's style picks one.
    Normal { text: &'a str, ms: i64 },
    /// Literal text written as a JSON string whatever the style (e.g. "yesterday").
    Text(&'a str),
    /// No time field at all.
    Missing,
}

/// Identity fields, overridable for hard bad-data messages.
#[derive(Debug, Clone, Copy)]
pub struct Ident<'a> {
    /// `None` leaves the field out.
    pub uuid: Option<&'a str>,
    pub hostname: bool,
}

impl<'a> Ident<'a> {
    pub fn of(gpu: &'a GpuInfo) -> Self {
        Ident {
            uuid: Some(&gpu.uuid),
            hostname: true,
        }
    }
}

/// Appends a decimal unsigned integer.
pub fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

/// Appends a decimal signed integer.
pub fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends tenths as a number with one decimal (4125 -> `412.5`).
fn push_deci(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    let a = v.unsigned_abs();
    push_u64(out, a / 10);
    out.push('.');
    out.push((b'0' + (a % 10) as u8) as char);
}

/// Appends hundredths as a ratio with two decimals (82 -> `0.82`).
fn push_centi(out: &mut String, v: u32) {
    push_u64(out, u64::from(v / 100));
    out.push('.');
    let r = v % 100;
    out.push((b'0' + (r / 10) as u8) as char);
    out.push((b'0' + (r % 10) as u8) as char);
}

struct Writer<'a> {
    out: &'a mut String,
    spoil: Spoil,
}

impl Writer<'_> {
    #[inline]
    fn lit(&mut self, s: &str) {
        self.out.push_str(s);
    }

    #[inline]
    fn u(&mut self, v: u64) {
        push_u64(self.out, v);
    }

    #[inline]
    fn i(&mut self, v: i64) {
        push_i64(self.out, v);
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        self.out.push_str(s);
        self.out.push('"');
    }

    /// Writes a spoilable field through `normal`, unless it is the spoiled one.
    #[inline]
    fn field(&mut self, f: Field, normal: impl FnOnce(&mut String)) {
        match self.spoil {
            Spoil::WrongType(g) if g == f => {
                self.out.push('"');
                normal(self.out);
                self.out.push('"');
            }
            Spoil::NotFinite(g, nan) if g == f => {
                self.out
                    .push_str(if nan { "\"NaN\"" } else { "\"Infinity\"" });
            }
            Spoil::OutOfRange(g) if g == f => self.out.push_str(f.out_of_range_literal()),
            _ => normal(self.out),
        }
    }

    fn bool_or_int(&mut self, v: bool, as_int: bool) {
        self.lit(match (v, as_int) {
            (true, false) => "true",
            (false, false) => "false",
            (true, true) => "1",
            (false, true) => "0",
        });
    }
}

/// Renders `s` for `gpu` in the GPU's shape, appending to `out`.
pub fn render(
    out: &mut String,
    gpu: &GpuInfo,
    s: &Sample,
    time: TimeRepr<'_>,
    spoil: Spoil,
    ident: Ident<'_>,
) {
    let mut w = Writer { out, spoil };
    match gpu.shape {
        Shape::Nested => nested(&mut w, gpu, s, time, ident),
        Shape::Flat => flat(&mut w, gpu, s, time, ident),
    }
}

fn nested(w: &mut Writer<'_>, gpu: &GpuInfo, s: &Sample, time: TimeRepr<'_>, ident: Ident<'_>) {
    w.lit("{");
    match time {
        TimeRepr::Normal { text, .. } | TimeRepr::Text(text) => {
            w.lit("\"timestamp\":");
            w.string(text);
            w.lit(",");
        }
        TimeRepr::Missing => {}
    }
    w.lit("\"gpu\":{");
    if let Some(uuid) = ident.uuid {
        w.lit("\"gpu_uuid\":");
        w.string(uuid);
        w.lit(",");
    }
    w.lit("\"pci_bus_id\":");
    w.string(gpu.pci_bus_id);
    w.lit(",\"device_index\":");
    w.u(u64::from(gpu.device_index));
    w.lit(",\"model\":");
    w.string(gpu.model.name);
    w.lit("},\"host\":{");
    if ident.hostname {
        w.lit("\"hostname\":");
        w.string(&gpu.hostname);
        w.lit(",");
    }
    w.lit("\"rack_id\":");
    w.string(&gpu.rack_id);
    w.lit(
        ",\"cluster_id\":\"c1\",\"datacenter\":\"dc1\"},\"metrics\":{\"health\":{\"gpu_temp_c\":",
    );
    w.field(Field::GpuTemp, |o| push_i64(o, i64::from(s.gpu_temp)));
    w.lit(",\"memory_temp_c\":");
    w.field(Field::MemoryTemp, |o| push_i64(o, i64::from(s.mem_temp)));
    w.lit(",\"power_usage_w\":");
    w.field(Field::PowerUsage, |o| push_deci(o, s.power_dw));
    w.lit(",\"throttle_reasons\":");
    w.u(u64::from(s.throttle));
    if let Some(x) = s.xid {
        w.lit(",\"xid\":");
        w.u(u64::from(x));
    }
    if let Some(v) = s.thermal_violation_ns {
        w.lit(",\"thermal_violation_ns\":");
        w.u(v);
    }
    if let Some(v) = s.power_violation_ns {
        w.lit(",\"power_violation_ns\":");
        w.u(v);
    }
    w.lit("},\"memory\":{\"fb_used_mib\":");
    w.u(s.fb_used_mib);
    w.lit(",\"fb_free_mib\":");
    w.u(s.fb_total_mib.saturating_sub(s.fb_used_mib));
    w.lit(",\"fb_total_mib\":");
    w.u(s.fb_total_mib);
    w.lit(",\"memory_utilization_pct\":");
    w.u(u64::from(s.mem_util));
    w.lit(",\"ecc_sbe_volatile\":");
    w.i(s.sbe_volatile);
    w.lit(",\"ecc_dbe_volatile\":");
    w.i(s.dbe_volatile);
    w.lit(",\"ecc_sbe_aggregate\":");
    w.field(Field::EccSbeAggregate, |o| push_i64(o, s.sbe_aggregate));
    w.lit(",\"ecc_dbe_aggregate\":");
    w.i(s.dbe_aggregate);
    w.lit(",\"retired_pages_dbe\":");
    w.i(s.retired_pages_dbe);
    if let Some(r) = s.remap {
        w.lit(",\"remapped_rows_correctable\":");
        w.u(u64::from(r.correctable));
        w.lit(",\"remapped_rows_uncorrectable\":");
        w.u(u64::from(r.uncorrectable));
        w.lit(",\"row_remap_pending\":");
        w.bool_or_int(r.pending, false);
        w.lit(",\"row_remap_failure\":");
        w.bool_or_int(r.failure, false);
    }
    w.lit("},\"performance\":{\"sm_active\":");
    w.field(Field::SmActive, |o| push_centi(o, s.sm_active));
    w.lit(",\"sm_occupancy\":");
    push_centi(w.out, s.sm_occupancy);
    w.lit(",\"tensor_active\":");
    push_centi(w.out, s.tensor_active);
    w.lit(",\"dram_active\":");
    push_centi(w.out, s.dram_active);
    w.lit(",\"pcie_tx_bytes_per_sec\":");
    w.u(s.pcie_tx);
    w.lit(",\"pcie_rx_bytes_per_sec\":");
    w.u(s.pcie_rx);
    w.lit("},\"clocks\":{\"sm_clock_mhz\":");
    w.field(Field::SmClock, |o| push_u64(o, u64::from(s.sm_clock)));
    w.lit(",\"mem_clock_mhz\":");
    w.u(u64::from(s.mem_clock));
    w.lit("},\"utilization\":{\"gpu_utilization_pct\":");
    w.field(Field::GpuUtilization, |o| push_u64(o, u64::from(s.util)));
    w.lit(",\"mem_copy_utilization_pct\":");
    w.u(u64::from(s.copy_util));
    w.lit("}");
    if let Some(v) = s.pcie_replay {
        w.lit(",\"pcie\":{\"replay_counter\":");
        w.u(v);
        w.lit("}");
    }
    w.lit("},\"collection\":{\"latency_ms\":");
    w.u(u64::from(s.latency_ms));
    w.lit("}}");
}

fn flat(w: &mut Writer<'_>, gpu: &GpuInfo, s: &Sample, time: TimeRepr<'_>, ident: Ident<'_>) {
    w.lit("{");
    match time {
        TimeRepr::Normal { text, ms } => {
            w.lit("\"time\":");
            match gpu.time_style {
                TimeStyle::EpochMillis => w.i(ms),
                TimeStyle::Rfc3339 => w.string(text),
            }
            w.lit(",");
        }
        TimeRepr::Text(text) => {
            w.lit("\"time\":");
            w.string(text);
            w.lit(",");
        }
        TimeRepr::Missing => {}
    }
    if let Some(uuid) = ident.uuid {
        w.lit("\"gpu_uuid\":");
        w.string(uuid);
        w.lit(",");
    }
    if ident.hostname {
        w.lit("\"hostname\":");
        w.string(&gpu.hostname);
        w.lit(",");
    }
    w.lit("\"pci_bus_id\":");
    w.string(gpu.pci_bus_id);
    w.lit(",\"device_index\":");
    w.u(u64::from(gpu.device_index));
    w.lit(",\"gpu_model\":");
    w.string(gpu.model.name);
    w.lit(",\"rack_id\":");
    w.string(&gpu.rack_id);
    w.lit(",\"cluster_id\":\"c1\",\"datacenter\":\"dc1\",\"gpu_temp\":");
    w.field(Field::GpuTemp, |o| push_i64(o, i64::from(s.gpu_temp)));
    w.lit(",\"memory_temp\":");
    w.field(Field::MemoryTemp, |o| push_i64(o, i64::from(s.mem_temp)));
    w.lit(",\"power_usage\":");
    w.field(Field::PowerUsage, |o| push_deci(o, s.power_dw));
    w.lit(",\"throttle_reasons\":");
    w.u(u64::from(s.throttle));
    w.lit(",\"fb_used_bytes\":");
    w.u(s.fb_used_mib * MIB);
    w.lit(",\"fb_free_bytes\":");
    w.u(s.fb_total_mib.saturating_sub(s.fb_used_mib) * MIB);
    w.lit(",\"fb_total_bytes\":");
    w.u(s.fb_total_mib * MIB);
    w.lit(",\"memory_utilization\":");
    w.u(u64::from(s.mem_util));
    w.lit(",\"ecc_sbe_volatile\":");
    w.i(s.sbe_volatile);
    w.lit(",\"ecc_dbe_volatile\":");
    w.i(s.dbe_volatile);
    w.lit(",\"ecc_sbe_aggregate\":");
    w.field(Field::EccSbeAggregate, |o| push_i64(o, s.sbe_aggregate));
    w.lit(",\"ecc_dbe_aggregate\":");
    w.i(s.dbe_aggregate);
    w.lit(",\"retired_pages_dbe\":");
    w.i(s.retired_pages_dbe);
    w.lit(",\"sm_active\":");
    w.field(Field::SmActive, |o| push_centi(o, s.sm_active));
    w.lit(",\"sm_occupancy\":");
    push_centi(w.out, s.sm_occupancy);
    w.lit(",\"tensor_active\":");
    push_centi(w.out, s.tensor_active);
    w.lit(",\"dram_active\":");
    push_centi(w.out, s.dram_active);
    w.lit(",\"pcie_tx_bytes_per_sec\":");
    w.u(s.pcie_tx);
    w.lit(",\"pcie_rx_bytes_per_sec\":");
    w.u(s.pcie_rx);
    w.lit(",\"sm_clock_mhz\":");
    w.field(Field::SmClock, |o| push_u64(o, u64::from(s.sm_clock)));
    w.lit(",\"mem_clock_mhz\":");
    w.u(u64::from(s.mem_clock));
    w.lit(",\"gpu_utilization\":");
    w.field(Field::GpuUtilization, |o| push_u64(o, u64::from(s.util)));
    w.lit(",\"mem_copy_utilization\":");
    w.u(u64::from(s.copy_util));
    w.lit(",\"collection_latency_ms\":");
    w.u(u64::from(s.latency_ms));
    if let Some(r) = s.remap {
        w.lit(",\"remapped_rows_correctable\":");
        w.u(u64::from(r.correctable));
        w.lit(",\"remapped_rows_uncorrectable\":");
        w.u(u64::from(r.uncorrectable));
        w.lit(",\"row_remap_pending\":");
        w.bool_or_int(r.pending, true);
        w.lit(",\"row_remap_failure\":");
        w.bool_or_int(r.failure, true);
    }
    if let Some(x) = s.xid {
        w.lit(",\"xid\":");
        w.u(u64::from(x));
    }
    if let Some(v) = s.thermal_violation_ns {
        w.lit(",\"thermal_violation_ns\":");
        w.u(v);
    }
    if let Some(v) = s.power_violation_ns {
        w.lit(",\"power_violation_ns\":");
        w.u(v);
    }
    if let Some(v) = s.pcie_replay {
        w.lit(",\"pcie_replay_counter\":");
        w.u(v);
    }
    w.lit("}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_writers() {
        let mut s = String::new();
        push_u64(&mut s, 0);
        s.push(' ');
        push_i64(&mut s, -1234);
        s.push(' ');
        push_deci(&mut s, 4125);
        s.push(' ');
        push_deci(&mut s, -50);
        s.push(' ');
        push_centi(&mut s, 82);
        s.push(' ');
        push_centi(&mut s, 5);
        s.push(' ');
        push_u64(&mut s, u64::MAX);
        assert_eq!(s, "0 -1234 412.5 -5.0 0.82 0.05 18446744073709551615");
    }
}
