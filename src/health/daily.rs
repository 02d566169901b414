//! Daily features per GPU, accumulated from admitted samples and emitted 1-minute
//! counter deltas, and closed into health scores when the watermark passes the end of
//! the UTC day plus the late horizon (so late data within the horizon still counts).
//!
//! Percentiles come from fixed-width histograms (0.5 C, 2 W, 10 MHz bins; nearest
//! rank, reported as the bin's lower edge), allocated when a signal first appears, so a
//! GPU-day stays a few KB whatever the sample rate. ECC increases are the sum of the
//! day's boundary-safe 1-minute deltas, so they match the rollups exactly; violation
//! time and PCIe replays are counters read sample to sample (a decrease is a reset).
//!
//! Lifecycle (docs/health-model.md): a day with no sample is a `missing` row once the
//! GPU has been silent for `stale_after`, and no row before; after `retire_after` the
//! GPU is no longer scored and its state is dropped. A GPU that comes back starts a
//! new history.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::limits::{SampleLimits, resolve};
use super::model::{
    CRITICAL_XIDS, DETACHED_SPAN_SHARE, DayFeatures, DayScore, FAULT_BITS, LOADED_GPU_UTIL_PCT,
    LOADED_SM_ACTIVE, NORMAL_BITS, POWER_FAULT_BITS, THERMAL_BITS, score_day, slope,
};
use super::span::SpanAcc;
use crate::event::columns::RawColumns;
use crate::event::schema::{
    ECC_DBE_VOLATILE, GPU_TEMP, GPU_TEMP_TLIMIT, MAX_SM_CLOCK, MEMORY_MAX_OP_TEMP, MEMORY_TEMP,
    PCIE_REPLAY, POWER, POWER_LIMIT, POWER_VIOLATION, REMAP_BANKS_EXHAUSTED, REMAP_FAILURE,
    REMAP_PENDING, REMAPPED_CORRECTABLE, REMAPPED_UNCORRECTABLE, RETIRED_PAGES, SLOWDOWN_TEMP,
    SM_ACTIVE, SM_CLOCK, THERMAL_VIOLATION, THROTTLE, XID, metric_index,
};
use crate::window::bucket::DAY_US;
use crate::window::fleet::GpuInfo;
use crate::window::operator::{Admission, DeltaChange, RowStatus};
use crate::window::watermark::Watermark;

const GPU_UTIL: usize = metric_index("gpu_utilization");
/// The counters read sample to sample: thermal and power violation time, PCIe replays.
const COUNTERS: [usize; 3] = [THERMAL_VIOLATION, POWER_VIOLATION, PCIE_REPLAY];

/// What the health tracker is configured with (`[health]`, `[window]`).
#[derive(Debug, Clone, Copy)]
pub struct HealthParams {
    /// The interval assumed for a day with fewer than two samples.
    pub fallback_interval_us: i64,
    pub late_horizon_us: i64,
    /// Covered seconds below which a day is `insufficient_data`.
    pub min_data_s: f64,
    /// Silence after which a day without samples is `missing`.
    pub stale_after_us: i64,
    /// Silence after which the GPU is no longer scored and its state is dropped.
    pub retire_after_us: i64,
}

impl HealthParams {
    /// The documented defaults: 1 h minimum, stale after 1 day, retired after 7.
    pub fn new(fallback_interval_s: u32, late_horizon_us: i64) -> Self {
        HealthParams {
            fallback_interval_us: fallback_interval_s.max(1) as i64 * 1_000_000,
            late_horizon_us,
            min_data_s: 3600.0,
            stale_after_us: DAY_US,
            retire_after_us: 7 * DAY_US,
        }
    }
}

/// A fixed-width histogram with saturating 16-bit counts, its bins allocated on the
/// first value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    lo: f64,
    hi: f64,
    width: f64,
    counts: Vec<u16>,
    n: u64,
}

impl Histogram {
    pub fn new(lo: f64, hi: f64, width: f64) -> Self {
        Histogram {
            lo,
            hi,
            width,
            counts: Vec::new(),
            n: 0,
        }
    }

    pub fn push(&mut self, x: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; ((self.hi - self.lo) / self.width).ceil() as usize];
        }
        let last = self.counts.len() - 1;
        let i = (((x - self.lo) / self.width).floor().max(0.0) as usize).min(last);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.n += 1;
    }

    /// Nearest-rank quantile, as the lower edge of its bin.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += *c as u64;
            if seen >= rank {
                return Some(self.lo + i as f64 * self.width);
            }
        }
        Some(self.lo + (self.counts.len() - 1) as f64 * self.width)
    }

    fn heap_bytes(&self) -> usize {
        self.counts.capacity() * 2
    }

    #[cfg(test)]
    pub fn bin_width(&self) -> f64 {
        self.width
    }
}

fn max_opt<T: PartialOrd + Copy>(a: Option<T>, v: T) -> Option<T> {
    Some(match a {
        Some(x) if x >= v => x,
        _ => v,
    })
}

/// Features of one GPU-day as they accumulate.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DayAcc {
    day: i64,
    samples: u64,
    invalid: u64,
    span: SpanAcc,
    /// The GPU's newest sample before this day (its cover reaches into the day).
    prev_last_us: Option<i64>,
    gpu_temp: Histogram,
    memory_temp: Histogram,
    headroom: Histogram,
    power: Histogram,
    loaded_clock: Histogram,
    gpu_temp_max: Option<f64>,
    memory_temp_max: Option<f64>,
    throttle_known: u64,
    thermal: u64,
    power_fault: u64,
    fault: u64,
    throttled: u64,
    dbe_volatile_max: Option<i64>,
    retired_pages: Option<i64>,
    remapped_rows: Option<i64>,
    banks_exhausted: Option<i64>,
    remap_pending: bool,
    remap_failure: bool,
    critical_xid: Option<i64>,
    deltas: [Option<i64>; 3],
    /// Increases of `COUNTERS` over the day.
    counter_inc: [Option<i64>; 3],
    power_limit: Option<f64>,
    slowdown: Option<f64>,
    memory_max: Option<f64>,
    max_sm_clock: Option<f64>,
}

impl DayAcc {
    fn new(day: i64, prev_last_us: Option<i64>) -> Self {
        DayAcc {
            day,
            samples: 0,
            invalid: 0,
            span: SpanAcc::default(),
            prev_last_us,
            gpu_temp: Histogram::new(-40.0, 150.0, 0.5),
            memory_temp: Histogram::new(-40.0, 150.0, 0.5),
            headroom: Histogram::new(-100.0, 150.0, 0.5),
            power: Histogram::new(0.0, 2000.0, 2.0),
            loaded_clock: Histogram::new(0.0, 10_000.0, 10.0),
            gpu_temp_max: None,
            memory_temp_max: None,
            throttle_known: 0,
            thermal: 0,
            power_fault: 0,
            fault: 0,
            throttled: 0,
            dbe_volatile_max: None,
            retired_pages: None,
            remapped_rows: None,
            banks_exhausted: None,
            remap_pending: false,
            remap_failure: false,
            critical_xid: None,
            deltas: [None; 3],
            counter_inc: [None; 3],
            power_limit: None,
            slowdown: None,
            memory_max: None,
            max_sm_clock: None,
        }
    }

    fn heap_bytes(&self) -> usize {
        self.span.heap_bytes()
            + [
                &self.gpu_temp,
                &self.memory_temp,
                &self.headroom,
                &self.power,
                &self.loaded_clock,
            ]
            .iter()
            .map(|h| h.heap_bytes())
            .sum::<usize>()
    }
}

/// Per-GPU state that outlives a day.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GpuHistory {
    first_seen_us: Option<i64>,
    /// The newest accepted sample.
    last_seen_us: Option<i64>,
    /// The newest sample of the days closed so far.
    last_closed_seen_us: Option<i64>,
    /// Whether a day with enough data was scored: only then is silence a detachment.
    established: bool,
    /// The last (time, value) of each of `COUNTERS`.
    counters: [Option<(i64, i64)>; 3],
    open: Vec<DayAcc>,
    /// (day, overall, had uncorrectable errors) of scored days in the last 30.
    days: VecDeque<(i64, f64, bool)>,
    /// Days before this are closed for this GPU (None: none yet, the tracker's floor).
    closed_before: Option<i64>,
}

/// A closed GPU-day: its features, score and trends.
#[derive(Debug, Clone)]
pub struct ScoredDay {
    pub gpu: u32,
    pub day_start_us: i64,
    pub features: DayFeatures,
    pub score: DayScore,
    pub delta_7d: Option<f64>,
    pub delta_30d: Option<f64>,
    pub degradation_rate: Option<f64>,
    /// Scored days of this GPU in the last 30, this one included.
    pub history_days: u32,
}

/// Daily health for all GPUs of one pipeline.
pub struct HealthTracker {
    params: HealthParams,
    gpus: Vec<GpuHistory>,
    /// Days before this are closed.
    closed_before_day: i64,
    max_event_us: i64,
    pub ignored_late_deltas: u64,
}

impl HealthTracker {
    pub fn new(params: HealthParams) -> Self {
        HealthTracker {
            params,
            gpus: Vec::new(),
            closed_before_day: i64::MIN,
            max_event_us: i64::MIN,
            ignored_late_deltas: 0,
        }
    }

    /// The GPU's history, created on first sight.
    fn history(&mut self, gpu: u32) -> &mut GpuHistory {
        let g = gpu as usize;
        if self.gpus.len() <= g {
            self.gpus.resize_with(g + 1, GpuHistory::default);
        }
        &mut self.gpus[g]
    }

    /// The open day of a GPU, created on first sight; `None` when the day is closed.
    fn acc(&mut self, gpu: u32, day: i64) -> Option<&mut DayAcc> {
        let floor = self.closed_before_day;
        let h = self.history(gpu);
        if day < h.closed_before.unwrap_or(floor) {
            return None;
        }
        let i = match h.open.iter().position(|a| a.day == day) {
            Some(i) => i,
            None => {
                let prev = h.last_seen_us.filter(|t| *t < day * DAY_US);
                h.open.push(DayAcc::new(day, prev));
                h.open.len() - 1
            }
        };
        Some(&mut h.open[i])
    }

    /// Adds the accepted rows of a raw batch.
    pub fn observe(&mut self, cols: &RawColumns, admission: &Admission) {
        for (row, status) in admission.status.iter().enumerate() {
            if *status != RowStatus::Accepted {
                continue;
            }
            let gpu = admission.gpu[row];
            let t = cols.time[row];
            self.max_event_us = self.max_event_us.max(t);
            let day = t.div_euclid(DAY_US);
            let h = self.history(gpu);
            h.first_seen_us = Some(h.first_seen_us.map_or(t, |f| f.min(t)));
            let m = &cols.metrics;
            let mut inc = [None; 3];
            for (k, idx) in COUNTERS.iter().enumerate() {
                let Some(v) = m[*idx].get_i64(row) else {
                    continue;
                };
                match h.counters[k] {
                    Some((lt, _)) if t <= lt => {}
                    Some((_, lv)) => {
                        inc[k] = Some(if v >= lv { v - lv } else { v });
                        h.counters[k] = Some((t, v));
                    }
                    None => {
                        inc[k] = Some(0);
                        h.counters[k] = Some((t, v));
                    }
                }
            }
            let Some(acc) = self.acc(gpu, day) else {
                let h = self.history(gpu);
                h.last_seen_us = max_opt(h.last_seen_us, t);
                continue;
            };
            acc.samples += 1;
            if !cols.validation_passed.value(row) {
                acc.invalid += 1;
            }
            acc.span.push(t);
            for (total, i) in acc.counter_inc.iter_mut().zip(inc) {
                if let Some(i) = i {
                    *total = Some(total.unwrap_or(0) + i);
                }
            }
            if let Some(v) = m[GPU_TEMP].get(row) {
                acc.gpu_temp.push(v);
                acc.gpu_temp_max = max_opt(acc.gpu_temp_max, v);
            }
            if let Some(v) = m[MEMORY_TEMP].get(row) {
                acc.memory_temp.push(v);
                acc.memory_temp_max = max_opt(acc.memory_temp_max, v);
            }
            if let Some(v) = m[GPU_TEMP_TLIMIT].get(row) {
                acc.headroom.push(v);
            }
            if let Some(v) = m[POWER].get(row) {
                acc.power.push(v);
            }
            let loaded = match m[SM_ACTIVE].get(row) {
                Some(a) => a >= LOADED_SM_ACTIVE,
                None => m[GPU_UTIL]
                    .get(row)
                    .is_some_and(|u| u >= LOADED_GPU_UTIL_PCT),
            };
            if let Some(c) = m[SM_CLOCK].get(row).filter(|_| loaded) {
                acc.loaded_clock.push(c);
            }
            if let Some(r) = m[THROTTLE].get_i64(row) {
                acc.throttle_known += 1;
                acc.thermal += (r & THERMAL_BITS != 0) as u64;
                acc.power_fault += (r & POWER_FAULT_BITS != 0) as u64;
                acc.fault += (r & FAULT_BITS != 0) as u64;
                acc.throttled += (r & !NORMAL_BITS != 0) as u64;
            }
            if let Some(v) = m[ECC_DBE_VOLATILE].get_i64(row) {
                acc.dbe_volatile_max = max_opt(acc.dbe_volatile_max, v);
            }
            if let Some(v) = m[RETIRED_PAGES].get_i64(row) {
                acc.retired_pages = max_opt(acc.retired_pages, v);
            }
            let remapped = [REMAPPED_CORRECTABLE, REMAPPED_UNCORRECTABLE]
                .map(|i| m[i].get_i64(row))
                .into_iter()
                .flatten()
                .reduce(|a, b| a + b);
            if let Some(r) = remapped {
                acc.remapped_rows = max_opt(acc.remapped_rows, r);
            }
            if let Some(b) = m[REMAP_BANKS_EXHAUSTED].get_i64(row) {
                acc.banks_exhausted = max_opt(acc.banks_exhausted, b);
            }
            acc.remap_pending |= m[REMAP_PENDING].get(row) == Some(1.0);
            acc.remap_failure |= m[REMAP_FAILURE].get(row) == Some(1.0);
            if let Some(x) = m[XID].get_i64(row).filter(|x| CRITICAL_XIDS.contains(x)) {
                acc.critical_xid = Some(x);
            }
            if let Some(v) = m[POWER_LIMIT].get(row) {
                acc.power_limit = max_opt(acc.power_limit, v);
            }
            if let Some(v) = m[SLOWDOWN_TEMP].get(row) {
                acc.slowdown = max_opt(acc.slowdown, v);
            }
            if let Some(v) = m[MEMORY_MAX_OP_TEMP].get(row) {
                acc.memory_max = max_opt(acc.memory_max, v);
            }
            if let Some(v) = m[MAX_SM_CLOCK].get(row) {
                acc.max_sm_clock = max_opt(acc.max_sm_clock, v);
            }
            let h = self.history(gpu);
            h.last_seen_us = max_opt(h.last_seen_us, t);
        }
    }

    /// Folds emitted changes of 1-minute counter deltas into the day totals.
    pub fn apply_deltas(&mut self, changes: &[DeltaChange]) {
        for ch in changes {
            let day = ch.minute_start_us.div_euclid(DAY_US);
            match self.acc(ch.gpu, day) {
                Some(acc) => {
                    for (total, d) in acc.deltas.iter_mut().zip(ch.diff) {
                        *total = Some(total.unwrap_or(0) + d);
                    }
                }
                None => self.ignored_late_deltas += 1,
            }
        }
    }

    /// Closes every day that ended at least `late_horizon` before the watermark (an
    /// ended input closes its days in `finish`).
    pub fn close_days(&mut self, watermark: Watermark, gpus: &[GpuInfo]) -> Vec<ScoredDay> {
        let Watermark::At(watermark) = watermark else {
            return Vec::new();
        };
        let close_before =
            (watermark.saturating_sub(self.params.late_horizon_us)).div_euclid(DAY_US);
        self.close_until(close_before, gpus, None)
    }

    /// End of a bounded input: closes every day up to the last event; the last day is
    /// judged only up to the newest event of the input (the watermark at the end).
    pub fn finish(&mut self, gpus: &[GpuInfo]) -> Vec<ScoredDay> {
        if self.max_event_us == i64::MIN {
            return Vec::new();
        }
        let last_day = self.max_event_us.div_euclid(DAY_US);
        self.close_until(last_day + 1, gpus, Some(self.max_event_us))
    }

    fn close_until(
        &mut self,
        close_before: i64,
        gpus: &[GpuInfo],
        input_end: Option<i64>,
    ) -> Vec<ScoredDay> {
        let mut out = Vec::new();
        // Each GPU keeps its own floor: a GPU restored from a checkpoint may have closed
        // fewer days than the GPUs this instance already had.
        for g in 0..self.gpus.len() {
            let Some(first_seen) = self.gpus[g].first_seen_us else {
                continue;
            };
            let floor = self.gpus[g].closed_before.unwrap_or(self.closed_before_day);
            let from = floor.max(first_seen.div_euclid(DAY_US));
            let model = gpus.get(g).and_then(|i| i.model.as_deref());
            let mut retired = false;
            for day in from..close_before {
                let span_end = input_end.map_or((day + 1) * DAY_US, |e| e.min((day + 1) * DAY_US));
                let h = &mut self.gpus[g];
                let Some(i) = h.open.iter().position(|a| a.day == day) else {
                    let Some(last) = h.last_closed_seen_us else {
                        continue;
                    };
                    let silent = span_end - last;
                    if silent >= self.params.retire_after_us {
                        if h.open.is_empty() {
                            retired = true;
                            break;
                        }
                    } else if silent >= self.params.stale_after_us {
                        out.push(ScoredDay {
                            gpu: g as u32,
                            day_start_us: day * DAY_US,
                            features: DayFeatures {
                                last_seen_us: Some(last),
                                ..DayFeatures::default()
                            },
                            score: DayScore::missing(),
                            delta_7d: None,
                            delta_30d: None,
                            degradation_rate: None,
                            history_days: h.days.len() as u32,
                        });
                    }
                    continue;
                };
                let acc = h.open.swap_remove(i);
                let features = self.features(&acc, first_seen, span_end, model, g);
                let score = score_day(&features);
                let h = &mut self.gpus[g];
                h.last_closed_seen_us = features.last_seen_us.or(h.last_closed_seen_us);
                h.established |= !features.insufficient && !features.detached;
                while h.days.front().is_some_and(|(d, _, _)| *d <= day - 30) {
                    h.days.pop_front();
                }
                let at = |k: i64| h.days.iter().find(|(d, _, _)| *d == day - k).map(|x| x.1);
                let delta_7d = score.overall.and_then(|o| at(7).map(|p| o - p));
                let delta_30d = score.overall.and_then(|o| at(30).map(|p| o - p));
                if let Some(o) = score.overall {
                    let had_dbe = features.dbe_increase.unwrap_or(0) > 0
                        || features.dbe_volatile_max.unwrap_or(0) > 0;
                    h.days.push_back((day, o, had_dbe));
                }
                let pts: Vec<(f64, f64)> = h.days.iter().map(|(d, o, _)| (*d as f64, *o)).collect();
                out.push(ScoredDay {
                    gpu: g as u32,
                    day_start_us: day * DAY_US,
                    features,
                    delta_7d,
                    delta_30d,
                    degradation_rate: score.overall.and(slope(&pts)),
                    history_days: h.days.len() as u32,
                    score,
                });
            }
            if retired {
                // Silent for `retire_after`: no longer scored, its state dropped. If it
                // reports again it starts a new history.
                self.gpus[g] = GpuHistory::default();
                continue;
            }
            let h = &mut self.gpus[g];
            h.closed_before = Some(floor.max(close_before));
        }
        self.closed_before_day = self.closed_before_day.max(close_before);
        out.sort_by_key(|s| (s.day_start_us, s.gpu));
        out
    }

    /// One GPU's daily state, for a checkpoint.
    pub fn gpu_state(&self, gpu: u32) -> Option<&GpuHistory> {
        self.gpus.get(gpu as usize)
    }

    /// Takes over a GPU's daily state from a checkpoint.
    pub fn restore_gpu(&mut self, gpu: u32, mut state: GpuHistory, max_event_us: Option<i64>) {
        // A GPU that never closed a day starts closing at its first day, whatever this
        // tracker has closed already.
        if state.closed_before.is_none() {
            state.closed_before = state.first_seen_us.map(|t| t.div_euclid(DAY_US));
        }
        *self.history(gpu) = state;
        if let Some(t) = max_event_us {
            self.max_event_us = self.max_event_us.max(t);
        }
    }

    /// Drops a GPU whose partition went to another instance: it is not scored here.
    pub fn forget_gpu(&mut self, gpu: u32) {
        if let Some(h) = self.gpus.get_mut(gpu as usize) {
            *h = GpuHistory::default();
        }
    }

    /// The newest accepted event time (judges a bounded input's last day).
    pub fn max_event_us(&self) -> Option<i64> {
        (self.max_event_us != i64::MIN).then_some(self.max_event_us)
    }

    fn features(
        &self,
        acc: &DayAcc,
        first_seen_us: i64,
        span_end: i64,
        model: Option<&str>,
        g: usize,
    ) -> DayFeatures {
        let p = &self.params;
        let h = &self.gpus[g];
        let day_start = acc.day * DAY_US;
        let span_start = first_seen_us.max(day_start);
        let span_end = span_end.max(span_start);
        let c = acc.span.covered(
            span_start,
            span_end,
            acc.prev_last_us,
            p.fallback_interval_us,
        );
        let expected_span_s = (span_end - span_start) as f64 / 1e6;
        let coverage = if expected_span_s > 0.0 {
            (c.covered_s / expected_span_s).min(1.0)
        } else {
            1.0
        };
        // Detached: an established GPU (or one with enough data today) silent for more
        // than half of its expected span at the end of it.
        let detached = (h.established || c.covered_s >= p.min_data_s)
            && c.quiet_tail_s > DETACHED_SPAN_SHARE * expected_span_s;
        let insufficient = c.covered_s < p.min_data_s && !detached;
        let share = |n: u64| (acc.throttle_known > 0).then(|| n as f64 / acc.throttle_known as f64);
        let covered_ns = c.covered_s * 1e9;
        let violation = |k: usize| {
            acc.counter_inc[k]
                .filter(|_| covered_ns > 0.0)
                .map(|ns| (ns as f64 / covered_ns).clamp(0.0, 1.0))
        };
        let thermal_violation_share = violation(0);
        let dbe_days_30 = h
            .days
            .iter()
            .filter(|(d, _, dbe)| *d > acc.day - 30 && *dbe)
            .count() as u32
            + (acc.deltas[1].unwrap_or(0) > 0 || acc.dbe_volatile_max.unwrap_or(0) > 0) as u32;
        let limits = resolve(
            &SampleLimits {
                power_w: acc.power_limit,
                slowdown_c: acc.slowdown,
                memory_max_c: acc.memory_max,
                max_sm_clock_mhz: acc.max_sm_clock,
            },
            model,
        );
        DayFeatures {
            limits,
            samples: acc.samples,
            expected_span_s,
            covered_s: c.covered_s,
            interval_s: c.interval_us as f64 / 1e6,
            coverage,
            longest_gap_s: c.longest_gap_s,
            insufficient,
            detached,
            last_seen_us: acc.span.samples_span().map(|(_, last)| last),
            gpu_temp_p95: acc.gpu_temp.quantile(0.95),
            gpu_temp_max: acc.gpu_temp_max,
            tlimit_headroom_p05: acc.headroom.quantile(0.05),
            memory_temp_p95: acc.memory_temp.quantile(0.95),
            memory_temp_max: acc.memory_temp_max,
            power_p95: acc.power.quantile(0.95),
            loaded_sm_clock_mhz: acc.loaded_clock.quantile(0.5),
            // HEALTH_MODEL: a 10-second bitmask misses short events; prefer DCGM's
            // violation time where the telemetry carries it.
            thermal_share: thermal_violation_share.or(share(acc.thermal)),
            thermal_violation_share,
            power_violation_share: violation(1),
            power_fault_share: share(acc.power_fault),
            fault_bits_share: share(acc.fault),
            throttled_share: share(acc.throttled),
            sbe_increase: acc.deltas[0],
            dbe_increase: acc.deltas[1],
            retired_increase: acc.deltas[2],
            dbe_volatile_max: acc.dbe_volatile_max,
            retired_pages: acc.retired_pages,
            remapped_rows: acc.remapped_rows,
            remap_banks_exhausted: acc.banks_exhausted,
            pcie_replays_per_min: acc.counter_inc[2]
                .filter(|_| c.covered_s > 0.0)
                .map(|n| n as f64 / (c.covered_s / 60.0)),
            invalid_share: if acc.samples == 0 {
                0.0
            } else {
                acc.invalid as f64 / acc.samples as f64
            },
            dbe_days_30,
            remap_pending: acc.remap_pending,
            remap_failure: acc.remap_failure,
            critical_xid: acc.critical_xid,
        }
    }

    /// Approximate bytes held by open days.
    pub fn state_bytes(&self) -> usize {
        self.gpus
            .iter()
            .map(|g| {
                std::mem::size_of::<GpuHistory>()
                    + g.days.len() * 24
                    + g.open
                        .iter()
                        .map(|a| std::mem::size_of::<DayAcc>() + a.heap_bytes())
                        .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Histogram quantiles are within one bin of the exact nearest-rank quantile.
        #[test]
        fn histogram_quantile_within_a_bin(xs in proptest::collection::vec(-40.0f64..149.0, 1..500), q in 0.01f64..1.0) {
            let mut h = Histogram::new(-40.0, 150.0, 0.5);
            xs.iter().for_each(|x| h.push(*x));
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            let rank = ((q * xs.len() as f64).ceil() as usize).max(1);
            let exact = sorted[rank - 1];
            let got = h.quantile(q).unwrap();
            prop_assert!(got <= exact && exact < got + h.bin_width() + 1e-9, "got {got} exact {exact}");
        }
    }
}
