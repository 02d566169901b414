//! Healthy per-GPU behaviour: workload phases (idle, inference, training) lasting tens of
//! minutes to hours, with metrics that follow each phase's targets slowly and in steps, so
//! that the data looks like real telemetry and compresses well.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::fleet::{GpuInfo, ModelSpec, mix64};
use super::shape::Sample;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Inference,
    Training,
}

/// Targets of the current phase (a "job").
#[derive(Debug, Clone, Copy, Default)]
struct Targets {
    temp: i32,
    power_dw: i64,
    util: u32,
    mem_util: u32,
    copy_util: u32,
    sm_active: u32,
    tensor: u32,
    dram: u32,
    fb_used_mib: u64,
    pcie: u64,
}

/// One GPU's simulated state; `step` advances it by one sample interval.
#[derive(Debug)]
pub struct GpuSim {
    model: &'static ModelSpec,
    phase: Phase,
    phase_left: u64,
    targets: Targets,
    /// Per-GPU constants: idle temperature, training temperature base, HBM offset.
    idle_temp: i32,
    train_temp: i32,
    mem_offset: i32,
    mem_wobble: i32,
    /// Probability of one new correctable error per sample.
    sbe_per_sample: f64,
    /// Keep the GPU loaded (set by a scenario).
    pub force_training: bool,
    ticks_per_minute: f64,
    pub cur: Sample,
}

#[inline]
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}

impl GpuSim {
    pub fn new(gpu: &GpuInfo, seed: u64, interval_s: u32, rng: &mut ChaCha8Rng) -> Self {
        let h = gpu
            .uuid
            .bytes()
            .fold(mix64(seed), |acc, b| mix64(acc ^ u64::from(b)));
        let model = gpu.model;
        let ticks_per_day = 86_400.0 / f64::from(interval_s);
        let sbe_per_day = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 3.0][(h % 8) as usize];
        let mut sim = GpuSim {
            model,
            phase: Phase::Idle,
            phase_left: 0,
            targets: Targets::default(),
            idle_temp: 35 + ((h >> 8) % 6) as i32,
            train_temp: 62 + ((h >> 16) % 7) as i32,
            mem_offset: 3 + ((h >> 24) % 4) as i32,
            mem_wobble: 0,
            sbe_per_sample: sbe_per_day / ticks_per_day,
            force_training: false,
            ticks_per_minute: 60.0 / f64::from(interval_s),
            cur: Sample {
                fb_total_mib: model.fb_total_mib,
                mem_clock: model.mem_clock,
                sbe_aggregate: ((h >> 32) % 51) as i64,
                latency_ms: 8 + ((h >> 40) % 8) as u32,
                // About a quarter of the GPUs report the PCIe replay counter (DCGM 202).
                pcie_replay: ((h >> 48) % 4 == 0).then_some((h >> 52) % 3),
                ..Sample::default()
            },
        };
        let first = if chance(rng, 0.6) {
            Phase::Training
        } else if chance(rng, 0.5) {
            Phase::Inference
        } else {
            Phase::Idle
        };
        sim.enter(first, rng);
        // Start part-way through the first phase, and already at its temperature.
        sim.phase_left = rng.random_range(1..=sim.phase_left.max(1));
        sim.cur.gpu_temp = sim.targets.temp;
        sim.cur.mem_temp = sim.targets.temp + sim.mem_offset;
        sim
    }

    pub fn max_sm_clock(&self) -> u32 {
        self.model.max_sm_clock
    }

    /// Sets the ECC starting point and rate (used by the counter-reset scenario).
    pub fn set_ecc(&mut self, sbe_aggregate: i64, per_day: f64, interval_s: u32) {
        self.cur.sbe_aggregate = sbe_aggregate;
        self.sbe_per_sample = per_day * f64::from(interval_s) / 86_400.0;
    }

    fn minutes(&self, rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> u64 {
        ((rng.random_range(lo..hi) * self.ticks_per_minute).round() as u64).max(1)
    }

    fn enter(&mut self, phase: Phase, rng: &mut ChaCha8Rng) {
        let m = self.model;
        let limit_dw = i64::from(m.power_limit_w) * 10;
        let fb = m.fb_total_mib as f64;
        self.phase = phase;
        self.targets = match phase {
            Phase::Idle => {
                self.phase_left = self.minutes(rng, 10.0, 90.0);
                Targets {
                    temp: self.idle_temp,
                    power_dw: (limit_dw as f64 * rng.random_range(0.13..0.17)) as i64,
                    util: 0,
                    mem_util: 0,
                    copy_util: 0,
                    sm_active: 0,
                    tensor: 0,
                    dram: 0,
                    fb_used_mib: rng.random_range(0..600),
                    pcie: rng.random_range(100..200) * 1_000_000,
                }
            }
            Phase::Inference => {
                self.phase_left = self.minutes(rng, 30.0, 180.0);
                Targets {
                    temp: 50 + rng.random_range(0..8),
                    power_dw: (limit_dw as f64 * rng.random_range(0.35..0.55)) as i64,
                    util: rng.random_range(40..75),
                    mem_util: rng.random_range(15..35),
                    copy_util: rng.random_range(10..30),
                    sm_active: rng.random_range(25..45),
                    tensor: rng.random_range(10..30),
                    dram: rng.random_range(15..35),
                    fb_used_mib: (fb * rng.random_range(0.2..0.6)) as u64,
                    pcie: rng.random_range(200..2000) * 1_000_000,
                }
            }
            Phase::Training => {
                self.phase_left = self.minutes(rng, 60.0, 360.0);
                Targets {
                    temp: (self.train_temp + rng.random_range(-2..5)).min(75),
                    power_dw: (limit_dw as f64 * rng.random_range(0.62..0.85)) as i64,
                    util: 100,
                    mem_util: rng.random_range(30..60),
                    copy_util: rng.random_range(20..50),
                    sm_active: rng.random_range(62..86),
                    tensor: rng.random_range(32..68),
                    dram: rng.random_range(25..55),
                    fb_used_mib: (fb * rng.random_range(0.5..0.95)) as u64,
                    pcie: rng.random_range(500..4500) * 1_000_000,
                }
            }
        };
        let t = self.targets;
        let c = &mut self.cur;
        c.power_dw = t.power_dw;
        c.util = t.util;
        c.mem_util = t.mem_util;
        c.copy_util = t.copy_util;
        c.fb_used_mib = t.fb_used_mib;
        c.sm_clock = match phase {
            Phase::Idle => m.idle_sm_clock,
            _ => m.max_sm_clock,
        };
        self.redraw_perf(rng);
        self.redraw_pcie(rng);
    }

    fn redraw_perf(&mut self, rng: &mut ChaCha8Rng) {
        let t = self.targets;
        let c = &mut self.cur;
        if t.sm_active == 0 {
            c.sm_active = 0;
            c.sm_occupancy = 0;
            c.tensor_active = 0;
            c.dram_active = 0;
            return;
        }
        c.sm_active = (t.sm_active + rng.random_range(0..7))
            .saturating_sub(3)
            .min(95);
        c.sm_occupancy = c.sm_active * rng.random_range(40..60) / 100;
        c.tensor_active = (t.tensor + rng.random_range(0..7)).saturating_sub(3);
        c.dram_active = (t.dram + rng.random_range(0..7)).saturating_sub(3);
    }

    fn redraw_pcie(&mut self, rng: &mut ChaCha8Rng) {
        let base = self.targets.pcie / 1_000_000;
        let spread = (base / 10).max(1);
        self.cur.pcie_rx = (base + rng.random_range(0..spread)) * 1_000_000;
        self.cur.pcie_tx = (base / 3 + rng.random_range(0..spread)) * 1_000_000;
    }

    fn next_phase(&mut self, rng: &mut ChaCha8Rng) {
        let next = if self.force_training {
            Phase::Training
        } else {
            let r = rng.random::<f64>();
            match self.phase {
                Phase::Idle if r < 0.7 => Phase::Training,
                Phase::Idle => Phase::Inference,
                Phase::Inference if r < 0.5 => Phase::Idle,
                Phase::Inference => Phase::Training,
                Phase::Training if r < 0.55 => Phase::Idle,
                Phase::Training if r < 0.75 => Phase::Inference,
                Phase::Training => Phase::Training,
            }
        };
        self.enter(next, rng);
    }

    /// Starts a training job now (a scenario that needs the GPU under load).
    pub fn start_training(&mut self, rng: &mut ChaCha8Rng) {
        self.force_training = true;
        if self.phase != Phase::Training {
            self.enter(Phase::Training, rng);
        }
    }

    /// Advances one sample interval and returns the new healthy sample.
    pub fn step(&mut self, rng: &mut ChaCha8Rng) -> &Sample {
        if self.phase_left <= 1 {
            self.next_phase(rng);
        } else {
            self.phase_left -= 1;
        }
        let t = self.targets;
        let m = self.model;

        // Temperature: steps towards the phase target, with rare one-degree wobble.
        let c = &mut self.cur;
        let diff = t.temp - c.gpu_temp;
        if diff != 0 {
            if chance(rng, 0.35) {
                c.gpu_temp += if diff.abs() > 8 {
                    2 * diff.signum()
                } else {
                    diff.signum()
                };
            }
        } else if chance(rng, 0.03) {
            c.gpu_temp += if chance(rng, 0.5) { 1 } else { -1 };
        }
        if chance(rng, 0.01) {
            self.mem_wobble = 1 - self.mem_wobble;
        }
        let c = &mut self.cur;
        c.mem_temp = (c.gpu_temp + self.mem_offset + self.mem_wobble).min(82);

        if chance(rng, 0.1) {
            let jitter = rng.random_range(-30..=30);
            c.power_dw = t.power_dw + t.power_dw * jitter / 1000;
        }
        let loaded = self.phase == Phase::Training;
        if chance(rng, 0.04) {
            c.util = match self.phase {
                Phase::Idle => 0,
                Phase::Training if chance(rng, 0.7) => 100,
                Phase::Training => rng.random_range(95..100),
                Phase::Inference => (t.util + rng.random_range(0..20)).saturating_sub(10),
            };
        }
        if chance(rng, 0.05) && t.mem_util > 0 {
            c.mem_util = t.mem_util + rng.random_range(0..6);
            c.copy_util = t.copy_util + rng.random_range(0..6);
        }
        if chance(rng, 0.05) {
            self.redraw_perf(rng);
        }
        if chance(rng, 0.05) {
            self.redraw_pcie(rng);
        }
        let c = &mut self.cur;
        if loaded && chance(rng, 0.02) {
            c.sm_clock = m.max_sm_clock - 15 * rng.random_range(0..3);
        }
        c.throttle = match self.phase {
            Phase::Idle => 0x1,
            Phase::Training if chance(rng, 0.01) => 0x4,
            _ => 0,
        };
        if chance(rng, 0.08) {
            c.latency_ms = if chance(rng, 0.05) {
                rng.random_range(20..31)
            } else {
                rng.random_range(6..16)
            };
        }
        if let Some(r) = &mut c.pcie_replay
            && chance(rng, 1e-4)
        {
            *r += 1;
        }
        if self.sbe_per_sample > 0.0 && chance(rng, self.sbe_per_sample) {
            c.sbe_aggregate += 1;
            c.sbe_volatile += 1;
        }
        &self.cur
    }
}
