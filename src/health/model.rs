//! Health model v1 (HEALTH_MODEL.md): every threshold, weight and gate is a named
//! constant here with its source, so the model can be reviewed and calibrated in one
//! place. Changing any constant means bumping `SCORING_VERSION`.

use serde::Serialize;

use super::limits::ModelLimits;

pub const SCORING_VERSION: &str = "v1";

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
/// Share of the day missing after having reported that means the GPU detached.
pub const DETACHED_DAY_SHARE: f64 = 0.5;
/// Fault clock-event bits on more than this share of samples: degraded at best.
pub const FAULT_BITS_DEGRADED_SHARE: f64 = 0.01;
/// A single telemetry gap longer than this share of the day: degraded at best.
pub const GAP_DEGRADED_SHARE: f64 = 0.05;

// ---- penalties: (warn, fail, full points) (HEALTH_MODEL "Dimension scores") ------
pub const GPU_TEMP_WARN_BELOW_SLOWDOWN: f64 = 10.0;
pub const GPU_TEMP_PENALTY: f64 = 50.0;
pub const MEM_TEMP_WARN_BELOW_MAX: f64 = 10.0;
pub const MEM_TEMP_PENALTY: f64 = 40.0;
pub const THERMAL_SHARE: (f64, f64, f64) = (0.005, 0.05, 50.0);
pub const POWER_BRAKE_SHARE: (f64, f64, f64) = (0.001, 0.02, 60.0);
pub const POWER_OVER_LIMIT: (f64, f64, f64) = (1.00, 1.10, 30.0);
pub const SBE_PER_DAY: (f64, f64, f64) = (10.0, 1000.0, 40.0);
pub const DBE_PER_DAY: (f64, f64, f64) = (0.0, 1.0, 100.0);
pub const RETIRED_PER_DAY: (f64, f64, f64) = (0.0, 1.0, 60.0);
pub const LOADED_CLOCK_RATIO: (f64, f64, f64) = (0.90, 0.70, 60.0);
pub const THROTTLED_SHARE: (f64, f64, f64) = (0.05, 0.50, 30.0);
pub const COVERAGE: (f64, f64, f64) = (0.95, 0.50, 60.0);
pub const DBE_DAYS_30: (f64, f64, f64) = (0.0, 1.0, 50.0);
pub const INVALID_SHARE: (f64, f64, f64) = (0.01, 0.20, 30.0);
/// `sm_active` at or above this counts as loaded for the clock check.
pub const LOADED_SM_ACTIVE: f64 = 0.5;

/// Grades by overall score (lower bounds).
pub const GRADES: [(f64, &str); 5] = [
    (90.0, "excellent"),
    (80.0, "good"),
    (70.0, "fair"),
    (55.0, "degraded"),
    (40.0, "poor"),
];
pub const GRADE_CRITICAL: &str = "critical";

/// The day's inputs for one GPU.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayFeatures {
    pub limits: Option<ModelLimits>,
    pub samples: u64,
    pub coverage: f64,
    pub longest_gap_s: f64,
    /// Whether the GPU reported before going quiet for more than half the day.
    pub detached: bool,
    pub gpu_temp_p95: Option<f64>,
    pub gpu_temp_max: Option<f64>,
    pub memory_temp_p95: Option<f64>,
    pub power_p95: Option<f64>,
    pub thermal_share: f64,
    pub power_fault_share: f64,
    pub fault_bits_share: f64,
    pub throttled_share: f64,
    pub sbe_increase: Option<i64>,
    pub dbe_increase: Option<i64>,
    pub retired_increase: Option<i64>,
    pub dbe_volatile_max: Option<i64>,
    pub retired_pages: Option<i64>,
    pub loaded_clock_ratio: Option<f64>,
    pub invalid_share: f64,
    pub dbe_days_30: u32,
    pub remap_pending: bool,
    pub remap_failure: bool,
    pub critical_xid: Option<i64>,
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

#[derive(Debug, Clone, PartialEq)]
pub struct DayScore {
    pub overall: f64,
    pub thermal: f64,
    pub power: f64,
    pub memory: f64,
    pub performance: f64,
    pub reliability: f64,
    pub grade: &'static str,
    pub factors: Vec<Factor>,
    pub gates: Vec<GateHit>,
}

impl DayScore {
    /// The JSON of `degradation_factors`: factors by points lost, then gates.
    pub fn factors_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            factors: &'a [Factor],
            gates: &'a [GateHit],
        }
        serde_json::to_string(&Out {
            factors: &self.factors,
            gates: &self.gates,
        })
        .unwrap_or_else(|_| "{}".into())
    }

    pub fn top_factor(&self) -> Option<&'static str> {
        self.factors.first().map(|f| f.name)
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
    lost: [f64; 5],
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
        let points = ramp(value, warn, fail, full);
        if points <= 0.0 {
            return;
        }
        let (i, weight) = match dim {
            Dimension::Thermal => (0, W_THERMAL),
            Dimension::Power => (1, W_POWER),
            Dimension::Memory => (2, W_MEMORY),
            Dimension::Performance => (3, W_PERFORMANCE),
            Dimension::Reliability => (4, W_RELIABILITY),
        };
        self.lost[i] += points;
        self.factors.push(Factor {
            name,
            dimension: dim,
            points,
            overall_points: points * weight,
            value,
            warn,
            fail,
        });
    }
}

/// Scores one GPU-day.
pub fn score_day(f: &DayFeatures) -> DayScore {
    use Dimension::*;
    let lim = f.limits.unwrap_or(super::limits::UNKNOWN_MODEL);
    let mut s = Scorer {
        factors: Vec::new(),
        lost: [0.0; 5],
    };
    s.penalise(
        "elevated_gpu_temp",
        Thermal,
        f.gpu_temp_p95,
        (
            lim.slowdown_temp_c - GPU_TEMP_WARN_BELOW_SLOWDOWN,
            lim.slowdown_temp_c,
            GPU_TEMP_PENALTY,
        ),
    );
    s.penalise(
        "elevated_memory_temp",
        Thermal,
        f.memory_temp_p95,
        (
            lim.memory_max_temp_c - MEM_TEMP_WARN_BELOW_MAX,
            lim.memory_max_temp_c,
            MEM_TEMP_PENALTY,
        ),
    );
    s.penalise(
        "thermal_throttling",
        Thermal,
        Some(f.thermal_share),
        THERMAL_SHARE,
    );
    s.penalise(
        "power_brake",
        Power,
        Some(f.power_fault_share),
        POWER_BRAKE_SHARE,
    );
    s.penalise(
        "power_over_limit",
        Power,
        f.power_p95.map(|p| p / lim.power_limit_w),
        POWER_OVER_LIMIT,
    );
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
        "low_clocks_under_load",
        Performance,
        f.loaded_clock_ratio,
        LOADED_CLOCK_RATIO,
    );
    s.penalise(
        "throttled",
        Performance,
        Some(f.throttled_share),
        THROTTLED_SHARE,
    );
    s.penalise("data_gap", Reliability, Some(f.coverage), COVERAGE);
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

    let dim = |i: usize| (100.0 - s.lost[i]).clamp(0.0, 100.0);
    let (thermal, power, memory, performance, reliability) =
        (dim(0), dim(1), dim(2), dim(3), dim(4));
    let weighted = thermal * W_THERMAL
        + power * W_POWER
        + memory * W_MEMORY
        + performance * W_PERFORMANCE
        + reliability * W_RELIABILITY;
    let lowest = thermal
        .min(power)
        .min(memory)
        .min(performance)
        .min(reliability);
    let mut overall = weighted.min(lowest + LOWEST_DIMENSION_MARGIN);

    let gates = gates(f);
    for g in &gates {
        overall = overall.min(g.cap);
    }
    let critical = gates.iter().any(|g| g.cap <= CRITICAL_CAP);
    let grade = if critical {
        GRADE_CRITICAL
    } else {
        grade_of(overall)
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
    if f.fault_bits_share > FAULT_BITS_DEGRADED_SHARE {
        hit("fault_clock_events", DEGRADED_CAP, f.fault_bits_share);
    }
    if f.longest_gap_s > GAP_DEGRADED_SHARE * 86_400.0 {
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
    use crate::health::limits::limits_for;

    fn healthy() -> DayFeatures {
        DayFeatures {
            limits: Some(limits_for(Some("NVIDIA H100 80GB HBM3"))),
            samples: 8640,
            coverage: 1.0,
            longest_gap_s: 10.0,
            gpu_temp_p95: Some(70.0),
            memory_temp_p95: Some(76.0),
            power_p95: Some(600.0),
            sbe_increase: Some(0),
            dbe_increase: Some(0),
            retired_increase: Some(0),
            loaded_clock_ratio: Some(0.98),
            ..Default::default()
        }
    }

    #[test]
    fn healthy_day_is_excellent() {
        let s = score_day(&healthy());
        assert_eq!(s.overall, 100.0);
        assert_eq!(s.grade, "excellent");
        assert!(s.factors.is_empty() && s.gates.is_empty());
    }

    #[test]
    fn hand_worked_thermal_example() {
        // p95 GPU temp 84 C on an H100: warn 79, fail 89 -> 5/10 of 50 = 25 points.
        // Thermal-throttled share 2.75%: (2.75-0.5)/(5-0.5) = 0.5 of 50 = 25 points.
        // Thermal = 50; weighted = 50*0.2 + 100*0.8 = 90; cap lowest+30 = 80 -> good.
        // Fault bits on 2.75% > 1%: degraded gate caps at 60 -> degraded.
        let mut f = healthy();
        f.gpu_temp_p95 = Some(84.0);
        f.thermal_share = 0.0275;
        let s = score_day(&f);
        assert!((s.thermal - 50.0).abs() < 1e-9);
        assert_eq!(s.overall, 80.0);
        assert_eq!(s.grade, "good");
        f.fault_bits_share = 0.0275;
        let s = score_day(&f);
        assert_eq!(s.overall, 60.0);
        assert_eq!(s.grade, "degraded");
        assert_eq!(s.gates[0].name, "fault_clock_events");
    }

    #[test]
    fn one_failing_dimension_pulls_the_gpu_down() {
        // DBE increase zeroes memory: weighted 75, cap 0 + 30 = 30; volatile DBE gate.
        let mut f = healthy();
        f.dbe_increase = Some(2);
        let s = score_day(&f);
        assert_eq!(s.memory, 0.0);
        assert_eq!(s.overall, 30.0);
        assert_eq!(s.grade, "critical");
        assert_eq!(s.top_factor(), Some("uncorrectable_ecc"));
    }

    #[test]
    fn detachment_is_critical_even_with_perfect_signals() {
        let mut f = healthy();
        f.detached = true;
        f.coverage = 0.6;
        let s = score_day(&f);
        assert_eq!(s.grade, "critical");
        assert!(s.overall <= CRITICAL_CAP);
    }

    #[test]
    fn slope_of_a_line_is_its_gradient() {
        let pts: Vec<(f64, f64)> = (0..10).map(|d| (d as f64, 90.0 - 1.5 * d as f64)).collect();
        assert!((slope(&pts).unwrap() + 1.5).abs() < 1e-12);
        assert_eq!(slope(&pts[..2]), None);
    }
}
