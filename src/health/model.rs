//! Health model v2 (docs/health-model.md): every threshold, weight and gate is a named
//! constant here with its source, so the model can be reviewed and calibrated in one
//! place. Changing any constant means bumping `SCORING_VERSION`.

use serde::Serialize;

use super::limits::{Limit, Limits};

/// v2: coverage over the expected span in seconds, `insufficient_data` and `missing`,
/// limits from the sample first and never guessed, remapped rows, violation time,
/// PCIe replays, T.Limit headroom and the memory-temperature peak (issue 13).
pub const SCORING_VERSION: &str = "v2";

// ---- NVML clock-event reason bits: one definition, in the event layer ----------
pub use crate::event::clock_events::{FAULT_BITS, NORMAL_BITS, POWER_FAULT_BITS, THERMAL_BITS};

// ---- dimension weights (HEALTH_MODEL "Overall") -----------------------------------
pub const W_MEMORY: f64 = 0.25;
pub const W_THERMAL: f64 = 0.20;
pub const W_PERFORMANCE: f64 = 0.20;
pub const W_POWER: f64 = 0.15;
pub const W_RELIABILITY: f64 = 0.20;
/// Overall is capped at the lowest dimension plus this.
pub const LOWEST_DIMENSION_MARGIN: f64 = 30.0;

// ---- gates (DCGM health watches, NVIDIA row-remapping RMA policy) ---------------
pub const CRITICAL_CAP: f64 = 30.0;
pub const DEGRADED_CAP: f64 = 60.0;
/// DCGM's retired-pages FAIL limit (older releases 60).
pub const RETIRED_PAGES_FAIL: i64 = 63;
/// Xid 79 fallen off the bus, 64 remap failure, 95 uncontained memory error.
pub const CRITICAL_XIDS: [i64; 3] = [79, 64, 95];
/// Share of the expected span silent after having reported that means the GPU
/// detached (HEALTH_MODEL "Gates": more than half of its expected span).
pub const DETACHED_SPAN_SHARE: f64 = 0.5;
/// Fault clock-event bits (or thermal violation time) on more than this share of the
/// day: degraded at best.
pub const FAULT_BITS_DEGRADED_SHARE: f64 = 0.01;
/// A single uncovered stretch longer than this share of a day: degraded at best.
pub const GAP_DEGRADED_SHARE: f64 = 0.05;
/// NVIDIA's row-remapping RMA limits (A100/H100 memory error management): 8 spare rows
/// per bank, so a bank with none left has met the limit, and 512 remapped rows in all.
pub const REMAPPED_ROWS_RMA: i64 = 512;
/// DCGM's PCIe health watch: more than 8 replays per minute is a warning
/// (`DCGM_LIMIT_MAX_PCIREPLAY_RATE`, NVIDIA/DCGM `dcgm_structs.h`).
pub const PCIE_REPLAYS_PER_MIN_LIMIT: f64 = 8.0;

// ---- penalties: (warn, fail, full points) (HEALTH_MODEL "Dimension scores") ------
pub const GPU_TEMP_WARN_BELOW_SLOWDOWN: f64 = 10.0;
pub const GPU_TEMP_PENALTY: f64 = 50.0;
/// T.Limit headroom (nvidia-smi `temperature.gpu.tlimit`): T.Limit GPUs slow down at
/// -2 C (nvidia-smi -q "GPU Slowdown T.Limit Temp: -2 C" on the H100, H200 and L40S
/// captures), so the gpu_temp thresholds (slowdown - 10, slowdown) are headroom 8 and -2.
pub const TLIMIT_HEADROOM: (f64, f64) = (8.0, -2.0);
pub const MEM_TEMP_WARN_BELOW_MAX: f64 = 10.0;
pub const MEM_TEMP_PENALTY: f64 = 40.0;
/// The day's peak memory temperature against the memory max operating temperature
/// (nvidia-smi -q "Memory Max Operating Temp"): from 5 C below it to it (our choice: a
/// peak is one sample, so it weighs less than the p95).
pub const MEM_TEMP_PEAK_WARN_BELOW_MAX: f64 = 5.0;
pub const MEM_TEMP_PEAK_PENALTY: f64 = 20.0;
pub const THERMAL_SHARE: (f64, f64, f64) = (0.005, 0.05, 50.0);
pub const POWER_BRAKE_SHARE: (f64, f64, f64) = (0.001, 0.02, 60.0);
pub const POWER_OVER_LIMIT: (f64, f64, f64) = (1.00, 1.10, 30.0);
pub const SBE_PER_DAY: (f64, f64, f64) = (10.0, 1000.0, 40.0);
pub const DBE_PER_DAY: (f64, f64, f64) = (0.0, 1.0, 100.0);
pub const RETIRED_PER_DAY: (f64, f64, f64) = (0.0, 1.0, 60.0);
/// Remapped rows (correctable + uncorrectable) from an eighth of the RMA limit to the
/// limit (the warn point is ours: remapping is how HBM copes, a few rows are normal).
pub const REMAPPED_ROWS: (f64, f64, f64) = (64.0, 512.0, 40.0);
pub const LOADED_CLOCK_RATIO: (f64, f64, f64) = (0.90, 0.70, 60.0);
pub const THROTTLED_SHARE: (f64, f64, f64) = (0.05, 0.50, 30.0);
pub const COVERAGE: (f64, f64, f64) = (0.95, 0.50, 60.0);
pub const DBE_DAYS_30: (f64, f64, f64) = (0.0, 1.0, 50.0);
pub const INVALID_SHARE: (f64, f64, f64) = (0.01, 0.20, 30.0);
/// PCIe replays per minute of covered time: from 1 (ours) to DCGM's warning limit.
pub const PCIE_REPLAY_RATE: (f64, f64, f64) = (1.0, PCIE_REPLAYS_PER_MIN_LIMIT, 30.0);
/// `sm_active` at or above this counts as loaded for the clock check.
pub const LOADED_SM_ACTIVE: f64 = 0.5;
/// GPU-utilisation percent at or above this counts as loaded where `sm_active` (a DCGM
/// profiling field) is absent, as in nvidia-smi logs.
pub const LOADED_GPU_UTIL_PCT: f64 = 50.0;

/// Grades by overall score (lower bounds).
pub const GRADES: [(f64, &str); 5] = [
    (90.0, "excellent"),
    (80.0, "good"),
    (70.0, "fair"),
    (55.0, "degraded"),
    (40.0, "poor"),
];
pub const GRADE_CRITICAL: &str = "critical";
/// Under the day's minimum of data, with no gate hit: only supported dimensions.
pub const GRADE_INSUFFICIENT: &str = "insufficient_data";
/// Silent for `stale_after`: no scores, the last-seen time.
pub const GRADE_MISSING: &str = "missing";

/// The day's inputs for one GPU.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayFeatures {
    pub limits: Limits,
    pub samples: u64,
    /// Seconds the GPU was expected to report that day.
    pub expected_span_s: f64,
    /// Seconds of that span covered by samples.
    pub covered_s: f64,
    /// The GPU's interval that day (median spacing), seconds.
    pub interval_s: f64,
    /// covered / expected (1 for an empty span).
    pub coverage: f64,
    pub longest_gap_s: f64,
    /// Under the minimum of data, and not detached.
    pub insufficient: bool,
    /// Whether the GPU, established, went quiet for more than half its span.
    pub detached: bool,
    /// The newest sample up to the day's end.
    pub last_seen_us: Option<i64>,
    pub gpu_temp_p95: Option<f64>,
    pub gpu_temp_max: Option<f64>,
    /// 5th percentile of T.Limit headroom (the hot end).
    pub tlimit_headroom_p05: Option<f64>,
    pub memory_temp_p95: Option<f64>,
    pub memory_temp_max: Option<f64>,
    pub power_p95: Option<f64>,
    /// Median SM clock while loaded, MHz.
    pub loaded_sm_clock_mhz: Option<f64>,
    /// Thermal share used by the model: violation time where carried, else the bits.
    pub thermal_share: Option<f64>,
    pub thermal_violation_share: Option<f64>,
    /// Power-capping time share (DCGM 240); informational, capping at TDP is normal.
    pub power_violation_share: Option<f64>,
    pub power_fault_share: Option<f64>,
    pub fault_bits_share: Option<f64>,
    pub throttled_share: Option<f64>,
    pub sbe_increase: Option<i64>,
    pub dbe_increase: Option<i64>,
    pub retired_increase: Option<i64>,
    pub dbe_volatile_max: Option<i64>,
    pub retired_pages: Option<i64>,
    pub remapped_rows: Option<i64>,
    pub remap_banks_exhausted: Option<i64>,
    pub pcie_replays_per_min: Option<f64>,
    pub invalid_share: f64,
    pub dbe_days_30: u32,
    pub remap_pending: bool,
    pub remap_failure: bool,
    pub critical_xid: Option<i64>,
}

impl DayFeatures {
    /// p95 power over the power limit, where both are known.
    pub fn power_ratio(&self) -> Option<f64> {
        Some(self.power_p95? / self.limits.power_w?.value)
    }

    /// Median loaded SM clock over the maximum SM clock, where both are known.
    pub fn loaded_clock_ratio(&self) -> Option<f64> {
        Some(self.loaded_sm_clock_mhz? / self.limits.max_sm_clock_mhz?.value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Thermal,
    Power,
    Memory,
    Performance,
    Reliability,
}

impl Dimension {
    const ALL: [Dimension; 5] = [
        Dimension::Thermal,
        Dimension::Power,
        Dimension::Memory,
        Dimension::Performance,
        Dimension::Reliability,
    ];

    /// The name used in factors JSON and predictions.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Thermal => "thermal",
            Dimension::Power => "power",
            Dimension::Memory => "memory",
            Dimension::Performance => "performance",
            Dimension::Reliability => "reliability",
        }
    }

    fn weight(self) -> f64 {
        match self {
            Dimension::Thermal => W_THERMAL,
            Dimension::Power => W_POWER,
            Dimension::Memory => W_MEMORY,
            Dimension::Performance => W_PERFORMANCE,
            Dimension::Reliability => W_RELIABILITY,
        }
    }
}

/// A signal that took points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Factor {
    pub name: &'static str,
    pub dimension: Dimension,
    /// Points lost in the dimension.
    pub points: f64,
    /// Points lost in the overall score (points x dimension weight).
    pub overall_points: f64,
    pub value: f64,
    pub warn: f64,
    pub fail: f64,
}

/// A gate that capped the overall score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateHit {
    pub name: &'static str,
    pub cap: f64,
    pub value: f64,
}

/// A signal the data carried that was not scored, and why (`limits_unknown`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unscored {
    pub name: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DayScore {
    /// `None` for `missing` and `insufficient_data` days.
    pub overall: Option<f64>,
    /// Each `None` where no signal of the dimension could be scored.
    pub thermal: Option<f64>,
    pub power: Option<f64>,
    pub memory: Option<f64>,
    pub performance: Option<f64>,
    pub reliability: Option<f64>,
    pub grade: &'static str,
    pub factors: Vec<Factor>,
    pub gates: Vec<GateHit>,
    pub unscored: Vec<Unscored>,
}

impl DayScore {
    /// The row of a GPU silent for `stale_after`.
    pub fn missing() -> Self {
        DayScore {
            overall: None,
            thermal: None,
            power: None,
            memory: None,
            performance: None,
            reliability: None,
            grade: GRADE_MISSING,
            factors: Vec::new(),
            gates: Vec::new(),
            unscored: Vec::new(),
        }
    }

    /// The JSON of `degradation_factors`: factors by points lost, gates, and what was
    /// not scored.
    pub fn factors_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            factors: &'a [Factor],
            gates: &'a [GateHit],
            #[serde(skip_serializing_if = "<[Unscored]>::is_empty")]
            unscored: &'a [Unscored],
        }
        serde_json::to_string(&Out {
            factors: &self.factors,
            gates: &self.gates,
            unscored: &self.unscored,
        })
        .unwrap_or_else(|_| "{}".into())
    }

    /// The factor that cost most; `limits_unknown` when none did and limits were
    /// missing for a signal the data carried.
    pub fn top_factor(&self) -> Option<&'static str> {
        self.factors
            .first()
            .map(|f| f.name)
            .or_else(|| self.unscored.first().map(|u| u.reason))
    }

    /// Whether the day is scored (not `missing`, not `insufficient_data`).
    pub fn is_scored(&self) -> bool {
        self.overall.is_some()
    }

    fn dimension(&self, d: Dimension) -> Option<f64> {
        match d {
            Dimension::Thermal => self.thermal,
            Dimension::Power => self.power,
            Dimension::Memory => self.memory,
            Dimension::Performance => self.performance,
            Dimension::Reliability => self.reliability,
        }
    }

    /// The weakest scored dimension (first in order on ties).
    pub fn weakest(&self) -> Option<Dimension> {
        Dimension::ALL
            .into_iter()
            .filter_map(|d| self.dimension(d).map(|v| (d, v)))
            .fold(None, |best: Option<(Dimension, f64)>, (d, v)| match best {
                Some((_, b)) if b <= v => best,
                _ => Some((d, v)),
            })
            .map(|(d, _)| d)
    }
}

/// Points lost for `value`, growing linearly from 0 at `warn` to `full` at `fail`
/// (works for falling signals too, where fail < warn).
pub fn ramp(value: f64, warn: f64, fail: f64, full: f64) -> f64 {
    let frac = if fail > warn {
        (value - warn) / (fail - warn)
    } else {
        (warn - value) / (warn - fail)
    };
    frac.clamp(0.0, 1.0) * full
}

struct Scorer {
    factors: Vec<Factor>,
    unscored: Vec<Unscored>,
    lost: [f64; 5],
    /// Whether any signal of the dimension was scored.
    scored: [bool; 5],
}

impl Scorer {
    fn penalise(
        &mut self,
        name: &'static str,
        dim: Dimension,
        value: Option<f64>,
        (warn, fail, full): (f64, f64, f64),
    ) {
        let Some(value) = value else { return };
        let i = dim as usize;
        self.scored[i] = true;
        let points = ramp(value, warn, fail, full);
        if points <= 0.0 {
            return;
        }
        self.lost[i] += points;
        self.factors.push(Factor {
            name,
            dimension: dim,
            points,
            overall_points: points * dim.weight(),
            value,
            warn,
            fail,
        });
    }

    /// A signal judged against a limit: not scored, and noted, when the limit is
    /// unknown.
    fn against_limit(
        &mut self,
        name: &'static str,
        dim: Dimension,
        value: Option<f64>,
        limit: Option<Limit>,
        thresholds: impl Fn(f64) -> (f64, f64, f64),
    ) {
        match (value, limit) {
            (Some(v), Some(l)) => self.penalise(name, dim, Some(v), thresholds(l.value)),
            (Some(_), None) => self.unscored.push(Unscored {
                name,
                reason: "limits_unknown",
            }),
            (None, _) => {}
        }
    }
}

/// Scores one GPU-day.
pub fn score_day(f: &DayFeatures) -> DayScore {
    use Dimension::*;
    let lim = &f.limits;
    let mut s = Scorer {
        factors: Vec::new(),
        unscored: Vec::new(),
        lost: [0.0; 5],
        scored: [false; 5],
    };
    if f.tlimit_headroom_p05.is_some() {
        // The GPU's own headroom to its T.Limit needs no table.
        let (warn, fail) = TLIMIT_HEADROOM;
        s.penalise(
            "elevated_gpu_temp",
            Thermal,
            f.tlimit_headroom_p05,
            (warn, fail, GPU_TEMP_PENALTY),
        );
    } else {
        s.against_limit(
            "elevated_gpu_temp",
            Thermal,
            f.gpu_temp_p95,
            lim.slowdown_c,
            |t| (t - GPU_TEMP_WARN_BELOW_SLOWDOWN, t, GPU_TEMP_PENALTY),
        );
    }
    s.against_limit(
        "elevated_memory_temp",
        Thermal,
        f.memory_temp_p95,
        lim.memory_max_c,
        |t| (t - MEM_TEMP_WARN_BELOW_MAX, t, MEM_TEMP_PENALTY),
    );
    s.against_limit(
        "memory_temp_peak",
        Thermal,
        f.memory_temp_max,
        lim.memory_max_c,
        |t| (t - MEM_TEMP_PEAK_WARN_BELOW_MAX, t, MEM_TEMP_PEAK_PENALTY),
    );
    s.penalise(
        "thermal_throttling",
        Thermal,
        f.thermal_share,
        THERMAL_SHARE,
    );
    s.penalise("power_brake", Power, f.power_fault_share, POWER_BRAKE_SHARE);
    match lim.power_w {
        Some(_) => s.penalise("power_over_limit", Power, f.power_ratio(), POWER_OVER_LIMIT),
        None => s.against_limit("power_over_limit", Power, f.power_p95, None, |_| {
            POWER_OVER_LIMIT
        }),
    }
    s.penalise(
        "sbe_rate",
        Memory,
        f.sbe_increase.map(|v| v as f64),
        SBE_PER_DAY,
    );
    s.penalise(
        "uncorrectable_ecc",
        Memory,
        f.dbe_increase.map(|v| v as f64),
        DBE_PER_DAY,
    );
    s.penalise(
        "retired_pages",
        Memory,
        f.retired_increase.map(|v| v as f64),
        RETIRED_PER_DAY,
    );
    s.penalise(
        "remapped_rows",
        Memory,
        f.remapped_rows.map(|v| v as f64),
        REMAPPED_ROWS,
    );
    match lim.max_sm_clock_mhz {
        Some(_) => s.penalise(
            "low_clocks_under_load",
            Performance,
            f.loaded_clock_ratio(),
            LOADED_CLOCK_RATIO,
        ),
        None => s.against_limit(
            "low_clocks_under_load",
            Performance,
            f.loaded_sm_clock_mhz,
            None,
            |_| LOADED_CLOCK_RATIO,
        ),
    }
    s.penalise("throttled", Performance, f.throttled_share, THROTTLED_SHARE);
    if !f.insufficient {
        s.penalise("data_gap", Reliability, Some(f.coverage), COVERAGE);
    }
    s.penalise(
        "dbe_history",
        Reliability,
        Some(f.dbe_days_30 as f64),
        DBE_DAYS_30,
    );
    s.penalise(
        "invalid_telemetry",
        Reliability,
        Some(f.invalid_share),
        INVALID_SHARE,
    );
    s.penalise(
        "pcie_replay_rate",
        Reliability,
        f.pcie_replays_per_min,
        PCIE_REPLAY_RATE,
    );

    let dim = |d: Dimension| {
        let i = d as usize;
        s.scored[i].then(|| (100.0 - s.lost[i]).clamp(0.0, 100.0))
    };
    let (thermal, power, memory, performance, reliability) = (
        dim(Thermal),
        dim(Power),
        dim(Memory),
        dim(Performance),
        dim(Reliability),
    );
    // The weighted mean over the dimensions the data supports.
    let scored: Vec<(Dimension, f64)> = Dimension::ALL
        .into_iter()
        .zip([thermal, power, memory, performance, reliability])
        .filter_map(|(d, v)| v.map(|v| (d, v)))
        .collect();
    let weight: f64 = scored.iter().map(|(d, _)| d.weight()).sum();
    let weighted = scored.iter().map(|(d, v)| v * d.weight()).sum::<f64>() / weight;
    let lowest = scored.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
    let mut overall = weighted.min(lowest + LOWEST_DIMENSION_MARGIN);

    let gates = gates(f);
    for g in &gates {
        overall = overall.min(g.cap);
    }
    let critical = gates.iter().any(|g| g.cap <= CRITICAL_CAP);
    let (overall, grade) = if critical {
        (Some(overall), GRADE_CRITICAL)
    } else if f.insufficient && gates.is_empty() || scored.is_empty() {
        (None, GRADE_INSUFFICIENT)
    } else {
        (Some(overall), grade_of(overall))
    };
    let mut factors = s.factors;
    factors.sort_by(|a, b| b.overall_points.total_cmp(&a.overall_points));
    DayScore {
        overall,
        thermal,
        power,
        memory,
        performance,
        reliability,
        grade,
        factors,
        gates,
        unscored: s.unscored,
    }
}

pub fn grade_of(overall: f64) -> &'static str {
    GRADES
        .iter()
        .find(|(min, _)| overall >= *min)
        .map(|(_, g)| *g)
        .unwrap_or(GRADE_CRITICAL)
}

fn gates(f: &DayFeatures) -> Vec<GateHit> {
    let mut g = Vec::new();
    let mut hit = |name, cap, value: f64| g.push(GateHit { name, cap, value });
    if let Some(v) = f.dbe_volatile_max.filter(|v| *v > 0) {
        hit("volatile_dbe", CRITICAL_CAP, v as f64);
    }
    if f.remap_failure {
        hit("row_remap_failure", CRITICAL_CAP, 1.0);
    }
    if let Some(b) = f.remap_banks_exhausted.filter(|b| *b > 0) {
        hit("remap_bank_exhausted", CRITICAL_CAP, b as f64);
    }
    if let Some(r) = f.remapped_rows.filter(|r| *r >= REMAPPED_ROWS_RMA) {
        hit("remapped_rows_limit", CRITICAL_CAP, r as f64);
    }
    if let Some(p) = f.retired_pages.filter(|p| *p >= RETIRED_PAGES_FAIL) {
        hit("retired_pages_limit", CRITICAL_CAP, p as f64);
    }
    if let Some(x) = f.critical_xid {
        hit("critical_xid", CRITICAL_CAP, x as f64);
    }
    if f.detached {
        hit("stopped_reporting", CRITICAL_CAP, 1.0 - f.coverage);
    }
    if f.remap_pending {
        hit("remap_pending", DEGRADED_CAP, 1.0);
    }
    let fault = f
        .fault_bits_share
        .into_iter()
        .chain(f.thermal_violation_share)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    if let Some(share) = fault.filter(|s| *s > FAULT_BITS_DEGRADED_SHARE) {
        hit("fault_clock_events", DEGRADED_CAP, share);
    }
    if let Some(rate) = f
        .pcie_replays_per_min
        .filter(|r| *r > PCIE_REPLAYS_PER_MIN_LIMIT)
    {
        hit("pcie_replay_rate", DEGRADED_CAP, rate);
    }
    if !f.insufficient && f.longest_gap_s > GAP_DEGRADED_SHARE * 86_400.0 {
        hit("telemetry_gap", DEGRADED_CAP, f.longest_gap_s);
    }
    g
}

/// Least-squares slope of (day, score) points, points per day; None below 3 points.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::limits::{SampleLimits, resolve};

    fn healthy() -> DayFeatures {
        DayFeatures {
            limits: resolve(&SampleLimits::default(), Some("NVIDIA H100 80GB HBM3")),
            samples: 8640,
            expected_span_s: 86_400.0,
            covered_s: 86_400.0,
            interval_s: 10.0,
            coverage: 1.0,
            gpu_temp_p95: Some(70.0),
            memory_temp_p95: Some(76.0),
            power_p95: Some(600.0),
            sbe_increase: Some(0),
            dbe_increase: Some(0),
            retired_increase: Some(0),
            loaded_sm_clock_mhz: Some(1940.0),
            thermal_share: Some(0.0),
            power_fault_share: Some(0.0),
            fault_bits_share: Some(0.0),
            throttled_share: Some(0.0),
            ..Default::default()
        }
    }

    #[test]
    fn healthy_day_is_excellent() {
        let s = score_day(&healthy());
        assert_eq!(s.overall, Some(100.0));
        assert_eq!(s.grade, "excellent");
        assert!(s.factors.is_empty() && s.gates.is_empty() && s.unscored.is_empty());
    }

    #[test]
    fn hand_worked_thermal_example() {
        // p95 GPU temp 84 C on an H100: warn 79, fail 89 -> 5/10 of 50 = 25 points.
        // Thermal-throttled share 2.75%: (2.75-0.5)/(5-0.5) = 0.5 of 50 = 25 points.
        // Thermal = 50; weighted = 50*0.2 + 100*0.8 = 90; cap lowest+30 = 80 -> good.
        // Fault bits on 2.75% > 1%: degraded gate caps at 60 -> degraded.
        let mut f = healthy();
        f.gpu_temp_p95 = Some(84.0);
        f.thermal_share = Some(0.0275);
        let s = score_day(&f);
        assert!((s.thermal.unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(s.overall, Some(80.0));
        assert_eq!(s.grade, "good");
        f.fault_bits_share = Some(0.0275);
        let s = score_day(&f);
        assert_eq!(s.overall, Some(60.0));
        assert_eq!(s.grade, "degraded");
        assert_eq!(s.gates[0].name, "fault_clock_events");
    }

    #[test]
    fn tlimit_headroom_replaces_the_table_for_gpu_temperature() {
        // Headroom p05 3 C: warn 8, fail -2 -> 5/10 of 50 = 25 points, with no table row.
        let mut f = healthy();
        f.limits = Limits::default();
        f.tlimit_headroom_p05 = Some(3.0);
        let s = score_day(&f);
        assert_eq!(s.factors[0].name, "elevated_gpu_temp");
        assert!((s.factors[0].points - 25.0).abs() < 1e-9);
    }

    #[test]
    fn one_failing_dimension_pulls_the_gpu_down() {
        // DBE increase zeroes memory: weighted 75, cap 0 + 30 = 30.
        let mut f = healthy();
        f.dbe_increase = Some(2);
        let s = score_day(&f);
        assert_eq!(s.memory, Some(0.0));
        assert_eq!(s.overall, Some(30.0));
        assert_eq!(s.grade, "critical");
        assert_eq!(s.top_factor(), Some("uncorrectable_ecc"));
    }

    #[test]
    fn detachment_is_critical_even_with_perfect_signals() {
        let mut f = healthy();
        f.detached = true;
        f.coverage = 0.4;
        let s = score_day(&f);
        assert_eq!(s.grade, "critical");
        assert!(s.overall.unwrap() <= CRITICAL_CAP);
    }

    #[test]
    fn an_unknown_model_is_not_judged_against_a_guess() {
        // An H200-class draw of 626 W with no limit anywhere: power is not scored.
        let mut f = healthy();
        f.limits = Limits::default();
        f.power_p95 = Some(626.0);
        f.power_fault_share = None;
        let s = score_day(&f);
        assert_eq!(s.power, None);
        assert!(s.factors.iter().all(|x| x.name != "power_over_limit"));
        let names: Vec<_> = s.unscored.iter().map(|u| u.name).collect();
        assert!(names.contains(&"power_over_limit") && names.contains(&"elevated_gpu_temp"));
        assert_eq!(s.grade, "excellent");
        assert_eq!(s.top_factor(), Some("limits_unknown"));
        // Weights renormalise over the four scored dimensions: still 100.
        assert!((s.overall.unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn too_little_data_is_insufficient_not_critical_unless_a_gate_says_so() {
        let mut f = healthy();
        f.insufficient = true;
        f.coverage = 0.2;
        f.longest_gap_s = 80_000.0;
        let s = score_day(&f);
        assert_eq!(s.grade, "insufficient_data");
        assert_eq!(s.overall, None);
        assert_eq!(s.thermal, Some(100.0));
        // A volatile DBE in twenty minutes of data is still a fault.
        f.dbe_volatile_max = Some(1);
        assert_eq!(score_day(&f).grade, "critical");
    }

    #[test]
    fn remap_rma_limits_and_pcie_replays() {
        let mut f = healthy();
        f.remapped_rows = Some(288);
        // (288 - 64) / (512 - 64) = 0.5 of 40 = 20 memory points; weighted 95 -> excellent.
        let s = score_day(&f);
        assert_eq!(s.memory, Some(80.0));
        assert_eq!(s.grade, "excellent");
        f.remap_banks_exhausted = Some(1);
        assert_eq!(score_day(&f).gates[0].name, "remap_bank_exhausted");
        assert_eq!(score_day(&f).grade, "critical");
        let mut f = healthy();
        f.pcie_replays_per_min = Some(9.0);
        let s = score_day(&f);
        assert_eq!(s.grade, "degraded");
        assert_eq!(s.gates[0].name, "pcie_replay_rate");
    }

    #[test]
    fn slope_of_a_line_is_its_gradient() {
        let pts: Vec<(f64, f64)> = (0..10).map(|d| (d as f64, 90.0 - 1.5 * d as f64)).collect();
        assert!((slope(&pts).unwrap() + 1.5).abs() < 1e-12);
        assert_eq!(slope(&pts[..2]), None);
    }
}
