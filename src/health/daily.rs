//! Daily features per GPU, accumulated from admitted samples and emitted 1-minute
//! counter deltas, and closed into health scores when the watermark passes the end of
//! the UTC day plus the late horizon (so late data within the horizon still counts).
//!
//! Percentiles come from fixed-width histograms (0.5 C, 2 W, 10 MHz bins; nearest
//! rank, reported as the bin's lower edge), which keeps a GPU-day at about 5 KB
//! whatever the sample rate. ECC increases are the sum of the day's boundary-safe
//! 1-minute deltas, so they match the rollups exactly.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::limits::limits_for;
use super::model::{
    CRITICAL_XIDS, DETACHED_DAY_SHARE, DayFeatures, DayScore, FAULT_BITS, LOADED_SM_ACTIVE,
    NORMAL_BITS, POWER_FAULT_BITS, THERMAL_BITS, score_day, slope,
};
use crate::event::columns::RawColumns;
use crate::event::schema::{
    ECC_DBE_VOLATILE, GPU_TEMP, MEMORY_TEMP, POWER, REMAP_FAILURE, REMAP_PENDING, RETIRED_PAGES,
    SM_ACTIVE, SM_CLOCK, THROTTLE, XID,
};
use crate::window::bucket::DAY_US;
use crate::window::fleet::GpuInfo;
use crate::window::operator::{Admission, DeltaChange, RowStatus};
use crate::window::watermark::Watermark;

/// A fixed-width histogram with saturating 16-bit counts (a day has 8,640 samples at
/// 10 s, far below 65,535).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    lo: f64,
    width: f64,
    counts: Vec<u16>,
    n: u64,
}

impl Histogram {
    pub fn new(lo: f64, hi: f64, width: f64) -> Self {
        let bins = ((hi - lo) / width).ceil() as usize;
        Histogram {
            lo,
            width,
            counts: vec![0; bins],
            n: 0,
        }
    }

    pub fn push(&mut self, x: f64) {
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

    #[cfg(test)]
    pub fn bin_width(&self) -> f64 {
        self.width
    }
}

/// Features of one GPU-day as they accumulate.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DayAcc {
    day: i64,
    samples: u64,
    invalid: u64,
    slots: Vec<u64>,
    last_t: Option<i64>,
    gpu_temp: Histogram,
    memory_temp: Histogram,
    power: Histogram,
    loaded_clock: Histogram,
    gpu_temp_max: Option<f64>,
    throttle_known: u64,
    thermal: u64,
    power_fault: u64,
    fault: u64,
    throttled: u64,
    dbe_volatile_max: Option<i64>,
    retired_pages: Option<i64>,
    remap_pending: bool,
    remap_failure: bool,
    critical_xid: Option<i64>,
    deltas: [Option<i64>; 3],
}

impl DayAcc {
    fn new(day: i64, n_slots: usize) -> Self {
        DayAcc {
            day,
            samples: 0,
            invalid: 0,
            slots: vec![0; n_slots.div_ceil(64)],
            last_t: None,
            gpu_temp: Histogram::new(-40.0, 150.0, 0.5),
            memory_temp: Histogram::new(-40.0, 150.0, 0.5),
            power: Histogram::new(0.0, 2000.0, 2.0),
            loaded_clock: Histogram::new(0.0, 5000.0, 10.0),
            gpu_temp_max: None,
            throttle_known: 0,
            thermal: 0,
            power_fault: 0,
            fault: 0,
            throttled: 0,
            dbe_volatile_max: None,
            retired_pages: None,
            remap_pending: false,
            remap_failure: false,
            critical_xid: None,
            deltas: [None; 3],
        }
    }
}

/// Per-GPU state that outlives a day.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GpuHistory {
    first_seen_us: Option<i64>,
    open: Vec<DayAcc>,
    /// (day, overall, had uncorrectable errors) for the last 30 days.
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
    interval_us: i64,
    late_horizon_us: i64,
    gpus: Vec<GpuHistory>,
    /// Days before this are closed.
    closed_before_day: i64,
    max_event_us: i64,
    pub ignored_late_deltas: u64,
}

impl HealthTracker {
    pub fn new(sample_interval_s: u32, late_horizon_us: i64) -> Self {
        HealthTracker {
            interval_us: sample_interval_s.max(1) as i64 * 1_000_000,
            late_horizon_us,
            gpus: Vec::new(),
            closed_before_day: i64::MIN,
            max_event_us: i64::MIN,
            ignored_late_deltas: 0,
        }
    }

    fn n_slots(&self) -> usize {
        (DAY_US / self.interval_us) as usize
    }

    /// The GPU's history, created on first sight.
    fn history(&mut self, gpu: u32) -> &mut GpuHistory {
        let g = gpu as usize;
        if self.gpus.len() <= g {
            self.gpus.resize_with(g + 1, GpuHistory::default);
        }
        &mut self.gpus[g]
    }

    fn acc(&mut self, gpu: u32, day: i64) -> Option<&mut DayAcc> {
        let n_slots = self.n_slots();
        let floor = self.closed_before_day;
        let h = self.history(gpu);
        if day < h.closed_before.unwrap_or(floor) {
            return None;
        }
        let open = &mut h.open;
        let i = match open.iter().position(|a| a.day == day) {
            Some(i) => i,
            None => {
                open.push(DayAcc::new(day, n_slots));
                open.len() - 1
            }
        };
        Some(&mut open[i])
    }

    /// Adds the accepted rows of a raw batch.
    pub fn observe(&mut self, cols: &RawColumns, admission: &Admission) {
        let interval = self.interval_us;
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
            let Some(acc) = self.acc(gpu, day) else {
                continue;
            };
            acc.samples += 1;
            if !cols.validation_passed.value(row) {
                acc.invalid += 1;
            }
            let slot = ((t - day * DAY_US) / interval) as usize;
            if let Some(w) = acc.slots.get_mut(slot / 64) {
                *w |= 1 << (slot % 64);
            }
            acc.last_t = Some(acc.last_t.map_or(t, |l| l.max(t)));
            let m = &cols.metrics;
            if let Some(v) = m[GPU_TEMP].get(row) {
                acc.gpu_temp.push(v);
                acc.gpu_temp_max = Some(acc.gpu_temp_max.map_or(v, |x| x.max(v)));
            }
            if let Some(v) = m[MEMORY_TEMP].get(row) {
                acc.memory_temp.push(v);
            }
            if let Some(v) = m[POWER].get(row) {
                acc.power.push(v);
            }
            if let (Some(a), Some(c)) = (m[SM_ACTIVE].get(row), m[SM_CLOCK].get(row))
                && a >= LOADED_SM_ACTIVE
            {
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
                acc.dbe_volatile_max = Some(acc.dbe_volatile_max.map_or(v, |x| x.max(v)));
            }
            if let Some(v) = m[RETIRED_PAGES].get_i64(row) {
                acc.retired_pages = Some(acc.retired_pages.map_or(v, |x| x.max(v)));
            }
            acc.remap_pending |= m[REMAP_PENDING].get(row) == Some(1.0);
            acc.remap_failure |= m[REMAP_FAILURE].get(row) == Some(1.0);
            if let Some(x) = m[XID].get_i64(row).filter(|x| CRITICAL_XIDS.contains(x)) {
                acc.critical_xid = Some(x);
            }
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
        let close_before = (watermark.saturating_sub(self.late_horizon_us)).div_euclid(DAY_US);
        self.close_until(close_before, gpus, None)
    }

    /// End of a bounded input: closes every day up to the last event; the last day is
    /// judged only over the span the input covers.
    pub fn finish(&mut self, gpus: &[GpuInfo]) -> Vec<ScoredDay> {
        if self.max_event_us == i64::MIN {
            return Vec::new();
        }
        let last_day = self.max_event_us.div_euclid(DAY_US);
        let end = self.max_event_us + self.interval_us;
        self.close_until(last_day + 1, gpus, Some(end))
    }

    fn close_until(
        &mut self,
        close_before: i64,
        gpus: &[GpuInfo],
        input_end: Option<i64>,
    ) -> Vec<ScoredDay> {
        let mut out = Vec::new();
        let n_slots = self.n_slots();
        // Each GPU keeps its own floor: a GPU restored from a checkpoint may have closed
        // fewer days than the GPUs this instance already had.
        for g in 0..self.gpus.len() {
            let Some(first_seen) = self.gpus[g].first_seen_us else {
                continue;
            };
            let floor = self.gpus[g].closed_before.unwrap_or(self.closed_before_day);
            let from = floor.max(first_seen.div_euclid(DAY_US));
            for day in from..close_before {
                let acc = match self.gpus[g].open.iter().position(|a| a.day == day) {
                    Some(i) => self.gpus[g].open.swap_remove(i),
                    None => DayAcc::new(day, n_slots),
                };
                let model = gpus.get(g).and_then(|i| i.model.as_deref());
                let features = self.features(&acc, first_seen, model, input_end, g);
                let score = score_day(&features);
                let hist = &mut self.gpus[g].days;
                while hist.front().is_some_and(|(d, _, _)| *d <= day - 30) {
                    hist.pop_front();
                }
                let at = |k: i64| hist.iter().find(|(d, _, _)| *d == day - k).map(|x| x.1);
                let delta_7d = at(7).map(|o| score.overall - o);
                let delta_30d = at(30).map(|o| score.overall - o);
                let had_dbe = features.dbe_increase.unwrap_or(0) > 0
                    || features.dbe_volatile_max.unwrap_or(0) > 0;
                hist.push_back((day, score.overall, had_dbe));
                let pts: Vec<(f64, f64)> = hist.iter().map(|(d, o, _)| (*d as f64, *o)).collect();
                let history_days = hist.len() as u32;
                out.push(ScoredDay {
                    gpu: g as u32,
                    day_start_us: day * DAY_US,
                    features,
                    score,
                    delta_7d,
                    delta_30d,
                    degradation_rate: slope(&pts),
                    history_days,
                });
            }
            self.gpus[g].closed_before = Some(floor.max(close_before));
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
        model: Option<&str>,
        input_end: Option<i64>,
        g: usize,
    ) -> DayFeatures {
        let day_start = acc.day * DAY_US;
        let day_end = day_start + DAY_US;
        let span_start = first_seen_us.max(day_start);
        let span_end = input_end
            .map_or(day_end, |e| e.min(day_end))
            .max(span_start);
        let slot_of = |t: i64| ((t - day_start) / self.interval_us) as usize;
        let (s0, s1) = (
            slot_of(span_start),
            slot_of(span_end).max(slot_of(span_start) + 1),
        );
        let filled = |s: usize| {
            acc.slots
                .get(s / 64)
                .is_some_and(|w| w & (1 << (s % 64)) != 0)
        };
        let mut covered = 0usize;
        let mut longest = 0usize;
        let mut run = 0usize;
        for s in s0..s1 {
            if filled(s) {
                covered += 1;
                run = 0;
            } else {
                run += 1;
                longest = longest.max(run);
            }
        }
        let expected = (s1 - s0).max(1);
        let coverage = covered as f64 / expected as f64;
        let interval_s = self.interval_us as f64 / 1e6;
        // Detached: quiet for more than half the day after having reported.
        let reported_before = first_seen_us < day_start || acc.samples > 0;
        let quiet_from = acc.last_t.unwrap_or(day_start).max(span_start);
        let detached =
            reported_before && (span_end - quiet_from) as f64 > DETACHED_DAY_SHARE * DAY_US as f64;
        let share = |n: u64| {
            if acc.throttle_known == 0 {
                0.0
            } else {
                n as f64 / acc.throttle_known as f64
            }
        };
        let dbe_days_30 = self.gpus[g]
            .days
            .iter()
            .filter(|(d, _, dbe)| *d > acc.day - 30 && *dbe)
            .count() as u32
            + (acc.deltas[1].unwrap_or(0) > 0 || acc.dbe_volatile_max.unwrap_or(0) > 0) as u32;
        let limits = limits_for(model);
        DayFeatures {
            limits: Some(limits),
            samples: acc.samples,
            coverage,
            longest_gap_s: longest as f64 * interval_s,
            detached,
            gpu_temp_p95: acc.gpu_temp.quantile(0.95),
            gpu_temp_max: acc.gpu_temp_max,
            memory_temp_p95: acc.memory_temp.quantile(0.95),
            power_p95: acc.power.quantile(0.95),
            thermal_share: share(acc.thermal),
            power_fault_share: share(acc.power_fault),
            fault_bits_share: share(acc.fault),
            throttled_share: share(acc.throttled),
            sbe_increase: acc.deltas[0],
            dbe_increase: acc.deltas[1],
            retired_increase: acc.deltas[2],
            dbe_volatile_max: acc.dbe_volatile_max,
            retired_pages: acc.retired_pages,
            loaded_clock_ratio: acc
                .loaded_clock
                .quantile(0.5)
                .map(|c| c / limits.max_sm_clock_mhz),
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
                g.open.len() * (std::mem::size_of::<DayAcc>() + 2 * (380 * 2 + 1000 + 500) + 8 * 14)
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
