//! Fault scenarios: which GPU gets which fault, when each starts, how it changes that
//! GPU's samples (or stops them), and which samples bad-data injection must leave alone.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::fleet::ModelSpec;
use super::shape::{Remap, Sample};
use super::workload::GpuSim;

const DAY_S: f64 = 86_400.0;
const HOUR_S: f64 = 3_600.0;

/// The injected faults, in the order they are assigned to GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    ThermalRunaway,
    EccStorm,
    PowerBrake,
    FellOffBus,
    CounterReset,
    SlowGpu,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::ThermalRunaway,
        Scenario::EccStorm,
        Scenario::PowerBrake,
        Scenario::FellOffBus,
        Scenario::CounterReset,
        Scenario::SlowGpu,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::ThermalRunaway => "thermal_runaway",
            Scenario::EccStorm => "ecc_storm",
            Scenario::PowerBrake => "power_brake",
            Scenario::FellOffBus => "fell_off_bus",
            Scenario::CounterReset => "counter_reset",
            Scenario::SlowGpu => "slow_gpu",
        }
    }
}

/// Maps a nominal (day, time of day) onto the run. Runs of two days or more use the nominal
/// times, moving an event that does not fit to the same time on an earlier day (never
/// before day 1); shorter runs scale every time and duration by `days / 3`.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    total_s: f64,
    scale: Option<f64>,
}

impl Timeline {
    pub fn new(days: f64) -> Self {
        Timeline {
            total_s: days * DAY_S,
            scale: (days < 2.0).then_some(days / 3.0),
        }
    }

    /// Seconds from the start of the run.
    pub fn at(&self, day: u32, tod_s: f64) -> f64 {
        match self.scale {
            Some(f) => (f64::from(day) * DAY_S + tod_s) * f,
            None => {
                let mut d = day;
                loop {
                    let o = f64::from(d) * DAY_S + tod_s;
                    if o + HOUR_S <= self.total_s || d <= 1 {
                        return o;
                    }
                    d -= 1;
                }
            }
        }
    }

    /// A duration, scaled like the times.
    pub fn dur(&self, s: f64) -> f64 {
        s * self.scale.unwrap_or(1.0)
    }
}

#[derive(Debug)]
enum State {
    Thermal {
        ramp_ticks: u64,
        hot: i32,
        violation_ns: u64,
    },
    Ecc {
        sbe_len_ticks: f64,
        dbe_ticks: [u64; 3],
    },
    Power {
        burst_left: u64,
        burst_ticks: (u64, u64),
        p_start: f64,
        violation_ns: u64,
    },
    FellOff,
    CounterReset {
        gap_end: u64,
        margin: u64,
        base: Option<(i64, i64)>,
    },
    Slow {
        clock: u32,
    },
}

/// One scenario placed on one GPU.
#[derive(Debug)]
pub struct Active {
    pub scenario: Scenario,
    pub gpu: usize,
    /// First affected sample tick (for `fell_off_bus`, the last sample's tick).
    pub start_tick: u64,
    state: State,
}

/// All scenarios of a run, with a per-GPU index for the hot path.
#[derive(Debug)]
pub struct Scenarios {
    pub active: Vec<Active>,
    by_gpu: Vec<Option<u8>>,
    interval_ns: u64,
}

#[inline]
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}

fn round15(v: f64) -> u32 {
    ((v / 15.0).round() * 15.0) as u32
}

impl Scenarios {
    pub fn none(gpus: usize) -> Self {
        Scenarios {
            active: Vec::new(),
            by_gpu: vec![None; gpus],
            interval_ns: 0,
        }
    }

    /// Places the six scenarios on six distinct GPUs: a seeded shuffle of all GPU indices,
    /// the first six taken in `Scenario::ALL` order. Needs at least 8 GPUs.
    pub fn assign(gpus: usize, days: f64, interval_s: u32, rng: &mut ChaCha8Rng) -> Self {
        let mut me = Scenarios::none(gpus);
        if gpus < 8 {
            return me;
        }
        me.interval_ns = u64::from(interval_s) * 1_000_000_000;
        let tl = Timeline::new(days);
        let iv = f64::from(interval_s);
        let tick = |s: f64| (s / iv).ceil().max(0.0) as u64;
        let mut order: Vec<usize> = (0..gpus).collect();
        order.shuffle(rng);
        for (k, scenario) in Scenario::ALL.into_iter().enumerate() {
            let gpu = order[k];
            let (start_s, state) = match scenario {
                Scenario::ThermalRunaway => (
                    tl.at(1, 2.0 * HOUR_S),
                    State::Thermal {
                        ramp_ticks: tick(tl.dur(2.0 * HOUR_S)).max(1),
                        hot: rng.random_range(89..93),
                        violation_ns: 0,
                    },
                ),
                Scenario::EccStorm => {
                    let dbe = tick(tl.at(2, 8.0 * HOUR_S));
                    let step = tick(600.0);
                    (
                        tl.at(1, 0.0),
                        State::Ecc {
                            sbe_len_ticks: (tl.dur(DAY_S) / iv).max(1.0),
                            dbe_ticks: [dbe, dbe + step, dbe + 4 * step],
                        },
                    )
                }
                Scenario::PowerBrake => {
                    let lo = tick(120.0).max(1);
                    let hi = tick(360.0).max(lo + 1);
                    let mean = (lo + hi) as f64 / 2.0;
                    (
                        tl.at(1, 0.0),
                        State::Power {
                            burst_left: 0,
                            burst_ticks: (lo, hi),
                            p_start: 0.06 / (mean * 0.94),
                            violation_ns: 0,
                        },
                    )
                }
                Scenario::FellOffBus => (tl.at(1, 6.0 * HOUR_S), State::FellOff),
                Scenario::CounterReset => {
                    let start = tl.at(1, 12.0 * HOUR_S);
                    (
                        start,
                        State::CounterReset {
                            gap_end: tick(start + 180.0),
                            margin: tick(180.0),
                            base: None,
                        },
                    )
                }
                Scenario::SlowGpu => (0.0, State::Slow { clock: 0 }),
            };
            me.by_gpu[gpu] = Some(k as u8);
            me.active.push(Active {
                scenario,
                gpu,
                start_tick: tick(start_s),
                state,
            });
        }
        me
    }

    /// Adjusts the healthy simulation of scenario GPUs before the run.
    pub fn init_sims(&mut self, sims: &mut [GpuSim], interval_s: u32, rng: &mut ChaCha8Rng) {
        for a in &mut self.active {
            let sim = &mut sims[a.gpu];
            match &mut a.state {
                State::CounterReset { .. } => {
                    sim.set_ecc(rng.random_range(480..521), 5.0, interval_s);
                }
                State::Slow { clock } => {
                    *clock = round15(0.55 * f64::from(sim.max_sm_clock()));
                }
                _ => {}
            }
        }
    }

    /// The scenario index of a GPU, if it has one.
    #[inline]
    pub fn of(&self, gpu: usize) -> Option<usize> {
        self.by_gpu[gpu].map(usize::from)
    }

    /// Called before the GPU's healthy step at `tick`.
    pub fn before_step(&mut self, idx: usize, tick: u64, sim: &mut GpuSim, rng: &mut ChaCha8Rng) {
        let a = &self.active[idx];
        if matches!(a.state, State::Thermal { .. }) && tick >= a.start_tick && !sim.force_training {
            sim.start_training(rng);
        }
    }

    /// Applies scenario `idx` to the sample at `tick`; false when the GPU sends nothing.
    pub fn apply(
        &mut self,
        idx: usize,
        tick: u64,
        s: &mut Sample,
        model: &ModelSpec,
        rng: &mut ChaCha8Rng,
    ) -> bool {
        let interval_ns = self.interval_ns;
        let a = &mut self.active[idx];
        let start = a.start_tick;
        let max = f64::from(model.max_sm_clock);
        match &mut a.state {
            State::Thermal {
                ramp_ticks,
                hot,
                violation_ns,
            } => {
                if tick >= start {
                    let p = (tick - start) as f64 / *ramp_ticks as f64;
                    let temp = if p < 1.0 {
                        s.gpu_temp + (f64::from(*hot - s.gpu_temp) * p).round() as i32
                    } else {
                        if chance(rng, 0.04) {
                            *hot = (*hot + if chance(rng, 0.5) { 1 } else { -1 }).clamp(88, 94);
                        }
                        *hot
                    };
                    s.gpu_temp = temp;
                    s.mem_temp = if p < 1.0 {
                        temp + 5
                    } else {
                        (temp + 5).clamp(93, 99)
                    };
                    if temp > 87 && chance(rng, 0.85) {
                        s.throttle = (s.throttle & !0x1) | 0x20;
                        if chance(rng, 0.8) {
                            s.throttle |= 0x40;
                        }
                        s.sm_clock = round15(0.75 * max);
                        s.power_dw = s.power_dw * 85 / 100;
                        *violation_ns += interval_ns * 8 / 10;
                    }
                }
                s.thermal_violation_ns = Some(*violation_ns);
            }
            State::Ecc {
                sbe_len_ticks,
                dbe_ticks,
            } => {
                let mut remap = Remap::default();
                if tick >= start {
                    let x = (tick - start) as f64 / *sbe_len_ticks;
                    let extra = if x <= 1.0 { 2000.0 * x * x } else { 2000.0 * x } as i64;
                    s.sbe_aggregate += extra;
                    s.sbe_volatile += extra;
                    remap.correctable = (extra / 400) as u32;
                }
                let dbe = dbe_ticks.iter().filter(|&&t| tick >= t).count() as i64;
                if dbe > 0 {
                    s.dbe_volatile = dbe;
                    s.dbe_aggregate += dbe;
                    s.retired_pages_dbe += [32, 64, 66][dbe as usize - 1];
                    remap.uncorrectable = dbe as u32;
                    remap.pending = true;
                    if dbe_ticks.contains(&tick) {
                        s.xid = Some(48);
                    }
                }
                s.remap = Some(remap);
            }
            State::Power {
                burst_left,
                burst_ticks,
                p_start,
                violation_ns,
            } => {
                if tick >= start {
                    if *burst_left == 0 && chance(rng, *p_start) {
                        *burst_left = rng.random_range(burst_ticks.0..=burst_ticks.1);
                    }
                    if *burst_left > 0 {
                        *burst_left -= 1;
                        s.throttle = (s.throttle & !0x1) | 0x80;
                        if chance(rng, 0.33) {
                            s.throttle |= 0x08;
                        }
                        s.sm_clock = round15(0.62 * max);
                        s.power_dw = s.power_dw * 70 / 100;
                        *violation_ns += interval_ns;
                    } else if s.sm_active >= 50 && chance(rng, 0.4) {
                        s.throttle |= 0x4;
                        *violation_ns += interval_ns / 4;
                    }
                }
                s.power_violation_ns = Some(*violation_ns);
            }
            State::FellOff => {
                if tick > start {
                    return false;
                }
                if tick == start {
                    s.xid = Some(79);
                }
            }
            State::CounterReset { gap_end, base, .. } => {
                if tick >= start && tick < *gap_end {
                    return false;
                }
                if tick >= *gap_end {
                    let (agg, vol) = *base.get_or_insert((s.sbe_aggregate, s.sbe_volatile));
                    s.sbe_aggregate -= agg;
                    s.sbe_volatile -= vol;
                }
            }
            State::Slow { clock } => {
                if s.sm_active >= 50 {
                    if chance(rng, 0.02) {
                        let base = round15(0.55 * max);
                        *clock = base + 15 * rng.random_range(0..3) - 15;
                    }
                    s.sm_clock = *clock;
                }
            }
        }
        true
    }

    /// Whether bad-data injection must leave the samples of `gpu` in ticks `from..=to`
    /// alone (`out_of_range`: also never on the counter-reset GPU).
    pub fn blocks(&self, gpu: usize, from: u64, to: u64, out_of_range: bool) -> bool {
        let Some(idx) = self.of(gpu) else {
            return false;
        };
        let a = &self.active[idx];
        match &a.state {
            State::FellOff => to + 1 >= a.start_tick,
            State::CounterReset {
                gap_end, margin, ..
            } => out_of_range || (from <= gap_end + margin && to + margin >= a.start_tick),
            State::Ecc { dbe_ticks, .. } => dbe_ticks.iter().any(|&t| t >= from && t <= to),
            _ => false,
        }
    }
}
