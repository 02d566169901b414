//! Deterministic synthetic fleet telemetry for the `gpu-metrics-enriched` topic: healthy
//! GPUs, injected fault scenarios and injected bad data, emitted as Kafka-style messages
//! in event-time order, with a manifest that says exactly what was injected where.
//!
//! Submodules: `fleet` (GPUs, hosts, models), `workload` (healthy behaviour), `scenario`
//! (faults), `bad_data` (injection plan and hard messages), `shape` (message text).

mod bad_data;
mod fleet;
mod scenario;
mod shape;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dump::{DumpRecord, DumpWriter, Message, kafka_partition};
use bad_data::{Action, Injection, Kind, PlanInput};
use fleet::mix64;
use scenario::Scenarios;
use shape::{Ident, Spoil, TimeRepr};
use workload::GpuSim;

/// The topic every generated message belongs to.
pub const TOPIC: &str = "gpu-metrics-enriched";

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Fleet size; GPUs are 8 per host.
    pub gpus: usize,
    /// Duration in days (fractional allowed).
    pub days: f64,
    pub start: DateTime<Utc>,
    /// Sample interval in seconds.
    pub interval_s: u32,
    pub seed: u64,
    /// Topic partitions; a message's partition is `kafka_partition(key, partitions)`.
    pub partitions: i32,
    /// Inject the fault scenarios (needs at least 8 GPUs).
    pub faults: bool,
    /// Inject bad data.
    pub bad_data: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            gpus: 16,
            days: 3.0,
            start: Utc
                .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            interval_s: 10,
            seed: 42,
            partitions: 4,
            faults: true,
            bad_data: true,
        }
    }
}

/// The options a dump was generated with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestOptions {
    pub gpus: usize,
    pub days: f64,
    /// RFC 3339.
    pub start: String,
    pub interval_s: u32,
    pub seed: u64,
    pub partitions: i32,
    pub faults: bool,
    pub bad_data: bool,
}

/// One GPU of the fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestGpu {
    pub gpu_uuid: String,
    pub hostname: String,
    pub model: String,
    /// "nested" or "flat".
    pub shape: String,
}

/// One injected fault scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestScenario {
    pub gpu_uuid: String,
    pub hostname: String,
    /// thermal_runaway, ecc_storm, power_brake, fell_off_bus, counter_reset or slow_gpu.
    pub scenario: String,
    /// Index of the first affected UTC day, counted from `start`.
    pub day: u32,
    /// RFC 3339 time of the first affected sample (fell_off_bus: its last sample).
    pub starts_at: String,
}

/// A real sample emitted beyond the late horizon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestTooLate {
    pub gpu_uuid: String,
    /// RFC 3339 event time of the sample.
    pub time: String,
}

/// A real sample with one spoiled field.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestSoft {
    pub gpu_uuid: String,
    pub time: String,
    /// The `gpu_metrics` column name of the spoiled field (e.g. "gpu_temp").
    pub field: String,
    /// wrong_type, not_finite or out_of_range.
    pub kind: String,
}

/// An unusable (dead-letter) message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestHard {
    pub kind: String,
    /// The GPU the message was about, where it carries a valid UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_uuid: Option<String>,
    pub partition: i32,
}

/// What a generated dump holds. Books: `messages == samples + hard.len() + duplicates`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub options: ManifestOptions,
    pub gpus: Vec<ManifestGpu>,
    pub scenarios: Vec<ManifestScenario>,
    /// Count per injected kind (every kind listed, zeros included).
    pub injected: BTreeMap<String, u64>,
    /// Messages emitted.
    pub messages: u64,
    /// Distinct real samples emitted.
    pub samples: u64,
    pub too_late: Vec<ManifestTooLate>,
    pub soft: Vec<ManifestSoft>,
    pub hard: Vec<ManifestHard>,
}

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix64(seed ^ mix64(stream)))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

struct PendingDup {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    partition: i32,
    /// Messages still to go before the copy is sent.
    after: u8,
}

/// Assigns offsets, counts messages and sends scheduled duplicates.
struct Emitter<'a> {
    sink: &'a mut dyn FnMut(Message) -> Result<()>,
    offsets: Vec<i64>,
    messages: u64,
    dups: Vec<PendingDup>,
}

impl Emitter<'_> {
    fn send(&mut self, key: Option<Vec<u8>>, value: Vec<u8>, partition: i32) -> Result<()> {
        let slot = &mut self.offsets[partition as usize];
        let offset = *slot;
        *slot += 1;
        self.messages += 1;
        (self.sink)(Message {
            key,
            value,
            topic: TOPIC.to_owned(),
            partition,
            offset,
        })
    }

    /// Sends a message, then any duplicate whose turn has come.
    fn emit(&mut self, key: Option<Vec<u8>>, value: Vec<u8>, partition: i32) -> Result<()> {
        self.send(key, value, partition)?;
        if self.dups.is_empty() {
            return Ok(());
        }
        for d in &mut self.dups {
            d.after = d.after.saturating_sub(1);
        }
        while let Some(pos) = self.dups.iter().position(|d| d.after == 0) {
            let d = self.dups.remove(pos);
            self.send(d.key, d.value, d.partition)?;
        }
        Ok(())
    }

    /// Re-sends a copy `nth` messages after the one just emitted (1 = the very next).
    fn schedule_dup(
        &mut self,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        partition: i32,
        nth: u8,
    ) -> Result<()> {
        if nth <= 1 {
            return self.send(key, value, partition);
        }
        self.dups.push(PendingDup {
            key,
            value,
            partition,
            after: nth - 1,
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for d in std::mem::take(&mut self.dups) {
            self.send(d.key, d.value, d.partition)?;
        }
        Ok(())
    }
}

struct Held {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    partition: i32,
}

/// Streams every message, in emission order, to `sink`; returns the manifest.
pub fn generate(
    opts: &GenerateOptions,
    sink: &mut dyn FnMut(Message) -> Result<()>,
) -> Result<Manifest> {
    if opts.gpus == 0 {
        bail!("gpus must be at least 1");
    }
    if opts.interval_s == 0 {
        bail!("interval_s must be at least 1");
    }
    if opts.partitions < 1 {
        bail!("partitions must be at least 1");
    }
    if !opts.days.is_finite() || opts.days <= 0.0 {
        bail!("days must be a positive number");
    }
    let interval = opts.interval_s;
    let n_ticks = (opts.days * 86_400.0 / f64::from(interval)).floor() as u64;

    let fleet = fleet::build_fleet(
        opts.gpus,
        opts.seed,
        opts.partitions,
        &mut rng_for(opts.seed, 1),
    );
    let mut sim_rng = rng_for(opts.seed, 2);
    let mut sims: Vec<GpuSim> = fleet
        .iter()
        .map(|g| GpuSim::new(g, opts.seed, interval, &mut sim_rng))
        .collect();
    let mut scen_rng = rng_for(opts.seed, 3);
    let mut scen = if opts.faults {
        Scenarios::assign(opts.gpus, opts.days, interval, &mut scen_rng)
    } else {
        Scenarios::none(opts.gpus)
    };
    scen.init_sims(&mut sims, interval, &mut scen_rng);
    let plan: Vec<Injection> = if opts.bad_data {
        let input = PlanInput {
            gpus: opts.gpus,
            n_ticks,
            interval_s: interval,
            scenarios: &scen,
        };
        bad_data::plan(&input, &mut rng_for(opts.seed, 4))
    } else {
        Vec::new()
    };

    let interval_ms = i64::from(interval) * 1000;
    let tick_time = |tick: u64| opts.start + Duration::milliseconds(tick as i64 * interval_ms);
    let mut manifest = Manifest {
        options: ManifestOptions {
            gpus: opts.gpus,
            days: opts.days,
            start: rfc3339(opts.start),
            interval_s: interval,
            seed: opts.seed,
            partitions: opts.partitions,
            faults: opts.faults,
            bad_data: opts.bad_data,
        },
        gpus: fleet
            .iter()
            .map(|g| ManifestGpu {
                gpu_uuid: g.uuid.clone(),
                hostname: g.hostname.clone(),
                model: g.model.name.to_owned(),
                shape: g.shape.name().to_owned(),
            })
            .collect(),
        scenarios: scen
            .active
            .iter()
            .map(|a| {
                let g = &fleet[a.gpu];
                ManifestScenario {
                    gpu_uuid: g.uuid.clone(),
                    hostname: g.hostname.clone(),
                    scenario: a.scenario.name().to_owned(),
                    day: (a.start_tick * u64::from(interval) / 86_400) as u32,
                    starts_at: rfc3339(tick_time(a.start_tick)),
                }
            })
            .collect(),
        injected: Kind::ALL.iter().map(|k| (k.name().to_owned(), 0)).collect(),
        messages: 0,
        samples: 0,
        too_late: Vec::new(),
        soft: Vec::new(),
        hard: Vec::new(),
    };
    let mut counts = [0u64; Kind::ALL.len()];

    let mut em = Emitter {
        sink,
        offsets: vec![0; opts.partitions as usize],
        messages: 0,
        dups: Vec::new(),
    };
    let mut held: BTreeMap<u64, Vec<Held>> = BTreeMap::new();
    let mut buf = String::with_capacity(4096);
    let mut next = 0usize;

    for tick in 0..n_ticks {
        let now = tick_time(tick);
        let text = rfc3339(now);
        let ms = now.timestamp_millis();
        let end = plan[next..]
            .iter()
            .position(|x| x.tick != tick)
            .map_or(plan.len(), |k| next + k);
        let here = &plan[next..end];
        next = end;

        for (g, gpu) in fleet.iter().enumerate() {
            let sidx = scen.of(g);
            if let Some(i) = sidx {
                scen.before_step(i, tick, &mut sims[g], &mut sim_rng);
            }
            let mut s = *sims[g].step(&mut sim_rng);
            if let Some(i) = sidx
                && !scen.apply(i, tick, &mut s, gpu.model, &mut sim_rng)
            {
                continue;
            }
            let inj = if here.is_empty() {
                None
            } else {
                here.iter().find(|x| x.gpu == g && !x.kind.is_hard())
            };
            let spoil = match inj {
                Some(Injection {
                    action: Action::Soft(sp),
                    ..
                }) => *sp,
                _ => Spoil::None,
            };
            buf.clear();
            shape::render(
                &mut buf,
                gpu,
                &s,
                TimeRepr::Normal { text: &text, ms },
                spoil,
                Ident::of(gpu),
            );
            manifest.samples += 1;
            let key = Some(gpu.uuid.as_bytes().to_vec());
            let value = buf.as_bytes().to_vec();
            let Some(inj) = inj else {
                em.emit(key, value, gpu.partition)?;
                continue;
            };
            counts[inj.kind as usize] += 1;
            match inj.action {
                Action::Soft(sp) => {
                    let field = match sp {
                        Spoil::WrongType(f) | Spoil::NotFinite(f, _) | Spoil::OutOfRange(f) => {
                            f.column()
                        }
                        Spoil::None => "",
                    };
                    manifest.soft.push(ManifestSoft {
                        gpu_uuid: gpu.uuid.clone(),
                        time: text.clone(),
                        field: field.to_owned(),
                        kind: inj.kind.name().to_owned(),
                    });
                    em.emit(key, value, gpu.partition)?;
                }
                Action::Duplicate { after } => {
                    em.emit(key.clone(), value.clone(), gpu.partition)?;
                    em.schedule_dup(key, value, gpu.partition, after)?;
                }
                Action::Move { release_tick } => {
                    if inj.kind == Kind::TooLate {
                        manifest.too_late.push(ManifestTooLate {
                            gpu_uuid: gpu.uuid.clone(),
                            time: text.clone(),
                        });
                    }
                    held.entry(release_tick).or_default().push(Held {
                        key,
                        value,
                        partition: gpu.partition,
                    });
                }
                Action::Hard { .. } => em.emit(key, value, gpu.partition)?,
            }
        }

        for inj in here.iter().filter(|x| x.kind.is_hard()) {
            let Action::Hard { variant } = inj.action else {
                continue;
            };
            let gpu = &fleet[inj.gpu];
            buf.clear();
            let at = now + Duration::milliseconds(interval_ms / 2);
            let key =
                bad_data::render_hard(&mut buf, inj.kind, variant, gpu, &sims[inj.gpu].cur, at);
            let partition = match &key {
                Some(k) => kafka_partition(k, opts.partitions),
                None => (u64::from(variant) % opts.partitions as u64) as i32,
            };
            let valid_uuid = key.as_deref() == Some(gpu.uuid.as_bytes());
            manifest.hard.push(ManifestHard {
                kind: inj.kind.name().to_owned(),
                gpu_uuid: valid_uuid.then(|| gpu.uuid.clone()),
                partition,
            });
            counts[inj.kind as usize] += 1;
            em.emit(key, buf.as_bytes().to_vec(), partition)?;
        }

        while let Some(entry) = held.first_entry() {
            if *entry.key() > tick {
                break;
            }
            for h in entry.remove() {
                em.emit(h.key, h.value, h.partition)?;
            }
        }
    }
    for (_, batch) in std::mem::take(&mut held) {
        for h in batch {
            em.emit(h.key, h.value, h.partition)?;
        }
    }
    em.flush()?;

    for (k, n) in Kind::ALL.iter().zip(counts) {
        manifest.injected.insert(k.name().to_owned(), n);
    }
    manifest.messages = em.messages;
    Ok(manifest)
}

/// Where the manifest of a dump is written: `<path>.manifest.json`.
pub fn manifest_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// Writes a dump file (via `DumpWriter`, compression by extension) and
/// `<path>.manifest.json` beside it.
pub fn generate_to_file(opts: &GenerateOptions, path: &Path) -> Result<Manifest> {
    let mut writer = DumpWriter::create(path)?;
    let manifest = generate(opts, &mut |m: Message| {
        let key = m.key.as_deref().and_then(|k| std::str::from_utf8(k).ok());
        writer.write(&DumpRecord::new(key, m.partition, &m.value))
    })?;
    writer
        .finish()
        .with_context(|| format!("finishing dump {}", path.display()))?;
    let mpath = manifest_path(path);
    let text = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(&mpath, text + "\n")
        .with_context(|| format!("writing manifest {}", mpath.display()))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests;
