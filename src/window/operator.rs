//! The streaming window operator: admits raw rows (duplicate and too-late checks),
//! keeps open 1-minute and 15-minute windows, emits them when the watermark passes
//! their end, re-emits them when late data within `late_horizon` changes them, and
//! finalises them when they can no longer change.
//!
//! State is bounded by the late horizon, per GPU: about `late_horizon / 1 min + 2`
//! one-minute states, `late_horizon / 15 min + 2` fifteen-minute states, and the
//! counter samples of the last `15 min + late_horizon` (also the de-duplication index).
//! A duplicate older than that is judged too late instead; its raw row still lands.

use std::collections::{BTreeMap, BTreeSet};

use ahash::AHashMap as HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use datafusion::arrow::array::Array;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::bucket::{MINUTE_US, Width, bucket_start};
use super::counter::{COUNTERS, CounterTrack, CounterValues, N_COUNTERS};
use super::partial::{InputColumns, PartialAggregator};
use super::rollup::{BucketState, ROLLUP_METRICS, RollupBuilder};
use super::watermark::{NO_WATERMARK, Watermarks};
use crate::event::columns::RawColumns;
use crate::event::schema::{ECC_DBE_VOLATILE, THROTTLE};

/// Event-time settings (DESIGN 3).
#[derive(Debug, Clone, Copy)]
pub struct WindowConfig {
    pub allowed_lateness_us: i64,
    pub late_horizon_us: i64,
    pub idle_timeout: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            allowed_lateness_us: 60 * 1_000_000,
            late_horizon_us: 10 * MINUTE_US,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What happened to each row of a raw batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    /// Feeds rollups and health; lands in the raw table.
    Accepted,
    /// Same `(time, gpu_uuid)` as an accepted row: counted once, dropped.
    Duplicate,
    /// Beyond the late horizon of `watermark` (the row's partition's, see `ingest`):
    /// lands in the raw table, changes no rollup, dead-lettered.
    TooLate { watermark: i64 },
}

/// A GPU the operator has seen.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GpuInfo {
    pub uuid: String,
    pub hostname: String,
    pub model: Option<String>,
}

/// Per-row verdicts and GPU ids of one raw batch.
#[derive(Debug, Default)]
pub struct Admission {
    pub status: Vec<RowStatus>,
    pub gpu: Vec<u32>,
}

/// A change of a 1-minute bucket's counter deltas (new minus previously emitted).
#[derive(Debug, Clone, Copy)]
pub struct DeltaChange {
    pub gpu: u32,
    pub minute_start_us: i64,
    pub diff: [i64; N_COUNTERS],
}

/// Rows emitted by one step.
#[derive(Debug, Default)]
pub struct Emission {
    /// Every emission, including re-emissions after late data (for upsert sinks).
    pub updates_1m: Vec<RecordBatch>,
    pub updates_15m: Vec<RecordBatch>,
    /// Each row once, when it can no longer change (for append-only sinks).
    pub finals_1m: Vec<RecordBatch>,
    pub finals_15m: Vec<RecordBatch>,
    pub delta_changes: Vec<DeltaChange>,
    pub watermark: i64,
    /// Accepted rows that landed in an already emitted window (re-emitted).
    pub late_updates: u64,
    /// Accepted rows whose minute had closed by the watermark (late, within horizon).
    pub behind_watermark: u64,
}

/// Sizes of the operator's state, for metrics and the bench.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateSize {
    pub gpus: usize,
    pub open_1m: usize,
    pub open_15m: usize,
    pub counter_samples: usize,
    pub approx_bytes: usize,
}

/// One GPU's window state, for a checkpoint: its identity, counter samples (also the
/// de-duplication index) and open 1-minute and 15-minute windows, each with whether
/// it awaits re-emission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GpuWindows {
    pub info: GpuInfo,
    track: CounterTrack,
    w1: Vec<(i64, BucketState, bool)>,
    w15: Vec<(i64, BucketState, bool)>,
}

/// One width's windows: state keyed by (bucket start, gpu) so that emission and
/// expiry are range scans in time order.
#[derive(Default)]
struct Windows {
    open: BTreeMap<(i64, u32), BucketState>,
    dirty: BTreeSet<(i64, u32)>,
}

pub struct WindowOperator {
    cfg: WindowConfig,
    aggregator: PartialAggregator,
    gpus: Vec<GpuInfo>,
    gpu_ids: HashMap<String, u32>,
    tracks: Vec<CounterTrack>,
    /// The partition each GPU's rows come from (keyed by GPU, so one per GPU).
    home: Vec<Option<i32>>,
    w1: Windows,
    w15: Windows,
    watermarks: Watermarks,
    /// Buckets ending at or before this were emitted.
    emitted_upto: i64,
}

impl WindowOperator {
    pub fn new(cfg: WindowConfig) -> Self {
        WindowOperator {
            cfg,
            aggregator: PartialAggregator::default(),
            gpus: Vec::new(),
            gpu_ids: HashMap::new(),
            tracks: Vec::new(),
            home: Vec::new(),
            w1: Windows::default(),
            w15: Windows::default(),
            watermarks: Watermarks::new(cfg.allowed_lateness_us, cfg.idle_timeout),
            emitted_upto: NO_WATERMARK,
        }
    }

    pub fn gpu(&self, id: u32) -> &GpuInfo {
        &self.gpus[id as usize]
    }

    /// Partitions the source reads, before their first event (see `Watermarks::expect`).
    pub fn expect_partitions(&mut self, partitions: &[i32], now: Instant) {
        for &p in partitions {
            self.watermarks.expect(p, now);
        }
    }

    pub fn gpus(&self) -> &[GpuInfo] {
        &self.gpus
    }

    pub fn watermark(&self) -> i64 {
        self.watermarks.current()
    }

    pub fn watermark_delay_us(&self) -> Option<i64> {
        self.watermarks.delay_us()
    }

    pub fn state_size(&self) -> StateSize {
        let bucket = std::mem::size_of::<BucketState>() + 48;
        let samples: usize = self.tracks.iter().map(|t| t.retained()).sum();
        let sample_bytes: usize = self.tracks.iter().map(|t| t.bytes()).sum();
        StateSize {
            gpus: self.gpus.len(),
            open_1m: self.w1.open.len(),
            open_15m: self.w15.open.len(),
            counter_samples: samples,
            approx_bytes: (self.w1.open.len() + self.w15.open.len()) * bucket + sample_bytes,
        }
    }

    fn intern(&mut self, uuid: &str, hostname: &str, model: Option<&str>) -> u32 {
        if let Some(&id) = self.gpu_ids.get(uuid) {
            let info = &mut self.gpus[id as usize];
            if info.hostname != hostname {
                info.hostname = hostname.to_owned();
            }
            if info.model.is_none() {
                info.model = model.map(str::to_owned);
            }
            return id;
        }
        let id = self.gpus.len() as u32;
        self.gpus.push(GpuInfo {
            uuid: uuid.to_owned(),
            hostname: hostname.to_owned(),
            model: model.map(str::to_owned),
        });
        self.gpu_ids.insert(uuid.to_owned(), id);
        self.tracks.push(CounterTrack::default());
        self.home.push(None);
        id
    }

    /// Admits a raw batch, merges its accepted rows into the windows, advances the
    /// watermark and emits what closed. `partitions[i]` is row i's source partition.
    pub async fn ingest(
        &mut self,
        batch: &RecordBatch,
        partitions: &[i32],
        now: Instant,
    ) -> Result<(Admission, Emission)> {
        let cols = RawColumns::new(batch);
        let n = batch.num_rows();
        let horizon = self.cfg.late_horizon_us;
        let mut admission = Admission {
            status: Vec::with_capacity(n),
            gpu: Vec::with_capacity(n),
        };
        let mut input = InputColumns::with_capacity(n);
        let mut late_updates = 0;
        let mut behind_watermark = 0;
        for row in 0..n {
            let t = cols.time[row];
            let model = cols
                .gpu_model
                .is_valid(row)
                .then(|| cols.gpu_model.value(row));
            let gpu = self.intern(cols.gpu_uuid.value(row), cols.hostname.value(row), model);
            admission.gpu.push(gpu);
            // The watermark moves row by row, so that what counts as late does not
            // depend on how the input was cut into batches. Too late is judged by the
            // row's own partition (never ahead of the pipeline's watermark): partition
            // order is fixed, so the verdict does not depend on how a consumer
            // interleaves partitions, and a replay or restart repeats it.
            let own = match partitions.get(row) {
                Some(&p) => {
                    self.home[gpu as usize] = Some(p);
                    self.watermarks.observe(p, t, now);
                    self.watermarks.of_partition(p)
                }
                None => None,
            };
            let watermark = self.watermarks.advance(now);
            let verdict_mark = own.unwrap_or(watermark).max(watermark);
            let minute = bucket_start(t, MINUTE_US);
            if minute + MINUTE_US + horizon <= verdict_mark {
                admission.status.push(RowStatus::TooLate {
                    watermark: verdict_mark,
                });
                continue;
            }
            let mut counters: CounterValues = [None; N_COUNTERS];
            for (c, &m) in COUNTERS.iter().enumerate() {
                counters[c] = cols.metrics[m].get_i64(row);
            }
            if !self.tracks[gpu as usize].insert(t, counters) {
                admission.status.push(RowStatus::Duplicate);
                continue;
            }
            admission.status.push(RowStatus::Accepted);
            if minute + MINUTE_US <= watermark {
                behind_watermark += 1;
            }
            if minute + MINUTE_US <= self.emitted_upto {
                late_updates += 1;
                self.mark_late(gpu, minute);
            }
            input.gpu_id.push(gpu);
            input.bucket.push(minute);
            for (k, rm) in ROLLUP_METRICS.iter().enumerate() {
                input.metrics[k].push(cols.metrics[rm.source].get(row).map(|v| v * rm.scale));
            }
            input.thr.push(cols.metrics[THROTTLE].get_i64(row));
            input.dbev.push(cols.metrics[ECC_DBE_VOLATILE].get_i64(row));
            input.valid.push(cols.validation_passed.value(row));
        }

        if !input.is_empty() {
            let partials = self
                .aggregator
                .aggregate(input.into_batch()?)
                .await
                .context("partial aggregation in DataFusion")?;
            let fifteen = Width::FifteenMinutes.micros();
            for p in partials {
                let q = bucket_start(p.bucket_start_us, fifteen);
                self.w15.open.entry((q, p.gpu)).or_default().merge(&p.state);
                self.w1
                    .open
                    .entry((p.bucket_start_us, p.gpu))
                    .or_default()
                    .merge(&p.state);
                // A late row may open a window the emitted range has passed (`mark_late`
                // saw it before it existed): it is emitted with the next step.
                if p.bucket_start_us + MINUTE_US <= self.emitted_upto {
                    self.w1.dirty.insert((p.bucket_start_us, p.gpu));
                }
                if q + fifteen <= self.emitted_upto {
                    self.w15.dirty.insert((q, p.gpu));
                }
            }
        }

        let new_watermark = self.watermarks.advance(now);
        let mut emission = self.emit(new_watermark)?;
        emission.late_updates = late_updates;
        emission.behind_watermark = behind_watermark;
        Ok((admission, emission))
    }

    /// The partition a GPU's rows come from, once one has arrived.
    pub fn home(&self, gpu: u32) -> Option<i32> {
        self.home.get(gpu as usize).copied().flatten()
    }

    /// Buckets ending at or before this were emitted.
    pub fn emitted_upto(&self) -> i64 {
        self.emitted_upto
    }

    /// A partition's highest event time (its clock), for a checkpoint.
    pub fn partition_clock(&self, partition: i32) -> Option<i64> {
        self.watermarks.max_event_of(partition)
    }

    /// The pipeline waited `stalled` for its sink: not idleness of any partition.
    pub fn discount_stall(&mut self, stalled: Duration, now: Instant) {
        self.watermarks.discount_stall(stalled, now);
    }

    /// Every partition's clock (highest event time), for logs.
    pub fn partition_clocks(&self) -> Vec<(i32, i64)> {
        self.watermarks.clocks()
    }

    /// Every GPU's window state, indexed by GPU id, in one pass over the open windows.
    pub fn export(&self) -> Vec<GpuWindows> {
        let mut out: Vec<GpuWindows> = self
            .gpus
            .iter()
            .zip(&self.tracks)
            .map(|(info, track)| GpuWindows {
                info: info.clone(),
                track: track.clone(),
                w1: Vec::new(),
                w15: Vec::new(),
            })
            .collect();
        for (windows, pick) in [(&self.w1, 0), (&self.w15, 1)] {
            for (&(start, gpu), state) in &windows.open {
                let dirty = windows.dirty.contains(&(start, gpu));
                let g = &mut out[gpu as usize];
                let list = if pick == 0 { &mut g.w1 } else { &mut g.w15 };
                list.push((start, state.clone(), dirty));
            }
        }
        out
    }

    /// Takes over partitions' clocks from checkpoints, and where the pipeline stood
    /// (the lowest `watermark` and `emitted_upto` among them). A fresh operator (a
    /// restart) goes on from there; one with partitions of its own keeps its emitted
    /// range and may move its watermark back (see `Watermarks::restore`).
    pub fn restore_partitions(
        &mut self,
        clocks: &[(i32, Option<i64>)],
        watermark: i64,
        emitted_upto: i64,
        now: Instant,
    ) {
        if self.watermarks.restore(clocks, watermark, now) {
            self.emitted_upto = emitted_upto;
        }
    }

    /// Takes over one GPU's window state from a checkpoint; returns its id. A window
    /// the checkpoint had not emitted but this operator has passed is emitted next.
    pub fn import(&mut self, state: GpuWindows, home: i32) -> u32 {
        let GpuWindows {
            info,
            track,
            w1,
            w15,
        } = state;
        let gpu = self.intern(&info.uuid, &info.hostname, info.model.as_deref());
        if self.home[gpu as usize].is_some() {
            self.forget(&[gpu]);
        }
        self.tracks[gpu as usize] = track;
        self.home[gpu as usize] = Some(home);
        let passed = self.emitted_upto;
        for (windows, list, width) in [
            (&mut self.w1, w1, MINUTE_US),
            (&mut self.w15, w15, Width::FifteenMinutes.micros()),
        ] {
            for (start, bucket, dirty) in list {
                let unemitted_behind = bucket.emitted_deltas.is_none() && start + width <= passed;
                if dirty || unemitted_behind {
                    windows.dirty.insert((start, gpu));
                }
                windows.open.insert((start, gpu), bucket);
            }
        }
        gpu
    }

    /// Drops GPUs' windows and samples (their partition went to another instance), in
    /// one pass over the open windows.
    pub fn forget(&mut self, gpus: &[u32]) {
        if gpus.is_empty() {
            return;
        }
        let mut gone = vec![false; self.gpus.len()];
        for &g in gpus {
            if let Some(x) = gone.get_mut(g as usize) {
                *x = true;
            }
            if let Some(t) = self.tracks.get_mut(g as usize) {
                *t = CounterTrack::default();
            }
            if let Some(h) = self.home.get_mut(g as usize) {
                *h = None;
            }
        }
        let kept = |g: u32| !gone.get(g as usize).copied().unwrap_or(false);
        for windows in [&mut self.w1, &mut self.w15] {
            windows.open.retain(|&(_, g), _| kept(g));
            windows.dirty.retain(|&(_, g)| kept(g));
        }
    }

    /// Drops a partition's clock (see `forget` for its GPUs).
    pub fn forget_partition(&mut self, partition: i32) {
        self.watermarks.forget(partition);
    }

    /// The end of a bounded input: emit and finalise everything.
    pub fn finish(&mut self) -> Result<Emission> {
        let w = self.watermarks.close_all();
        self.emit(w)
    }

    /// A late row in an emitted minute: that minute and every later emitted bucket of
    /// the GPU may change (counter steps), so they are re-emitted.
    fn mark_late(&mut self, gpu: u32, minute: i64) {
        let mut m = minute;
        while m + MINUTE_US <= self.emitted_upto {
            if self.w1.open.contains_key(&(m, gpu)) {
                self.w1.dirty.insert((m, gpu));
            }
            m += MINUTE_US;
        }
        let width = Width::FifteenMinutes.micros();
        let mut q = bucket_start(minute, width);
        while q + width <= self.emitted_upto {
            if self.w15.open.contains_key(&(q, gpu)) {
                self.w15.dirty.insert((q, gpu));
            }
            q += width;
        }
    }

    fn emit(&mut self, watermark: i64) -> Result<Emission> {
        let mut out = Emission {
            watermark,
            ..Default::default()
        };
        if watermark <= self.emitted_upto && self.w1.dirty.is_empty() && self.w15.dirty.is_empty() {
            return Ok(out);
        }
        let horizon = self.cfg.late_horizon_us;
        for width in [Width::OneMinute, Width::FifteenMinutes] {
            let w = width.micros();
            let (tracks, gpus) = (&self.tracks, &self.gpus);
            let windows = match width {
                Width::OneMinute => &mut self.w1,
                Width::FifteenMinutes => &mut self.w15,
            };
            let mut updates = RollupBuilder::default();
            // Newly closed: end in (emitted_upto, watermark].
            let lo = self.emitted_upto.saturating_sub(w).saturating_add(1);
            let hi = watermark.saturating_sub(w).saturating_add(1);
            let mut keys: Vec<(i64, u32)> = if hi > lo {
                windows
                    .open
                    .range((lo, 0)..(hi, 0))
                    .map(|(k, _)| *k)
                    .collect()
            } else {
                Vec::new()
            };
            keys.extend(std::mem::take(&mut windows.dirty));
            for key in keys {
                let Some(state) = windows.open.get_mut(&key) else {
                    continue;
                };
                let (start, gpu) = key;
                let deltas = tracks[gpu as usize].delta(start, start + w);
                if width == Width::OneMinute {
                    let old = state.emitted_deltas.unwrap_or([None; N_COUNTERS]);
                    let mut diff = [0i64; N_COUNTERS];
                    for c in 0..N_COUNTERS {
                        diff[c] = deltas[c].unwrap_or(0) - old[c].unwrap_or(0);
                    }
                    if diff != [0; N_COUNTERS] {
                        out.delta_changes.push(DeltaChange {
                            gpu,
                            minute_start_us: start,
                            diff,
                        });
                    }
                }
                state.emitted_deltas = Some(deltas);
                let info = &gpus[gpu as usize];
                updates.append(start, &info.uuid, &info.hostname, state, &deltas);
            }
            // Expired: end + horizon <= watermark; they can no longer change.
            let expire_before = watermark
                .saturating_sub(horizon)
                .saturating_sub(w)
                .saturating_add(1);
            let mut finals = RollupBuilder::default();
            while let Some(entry) = windows.open.first_entry() {
                if entry.key().0 >= expire_before {
                    break;
                }
                let ((start, gpu), state) = entry.remove_entry();
                let info = &gpus[gpu as usize];
                let deltas = state.emitted_deltas.unwrap_or([None; N_COUNTERS]);
                finals.append(start, &info.uuid, &info.hostname, &state, &deltas);
            }
            let (u, f) = match width {
                Width::OneMinute => (&mut out.updates_1m, &mut out.finals_1m),
                Width::FifteenMinutes => (&mut out.updates_15m, &mut out.finals_15m),
            };
            if !updates.is_empty() {
                u.push(updates.finish()?);
            }
            if !finals.is_empty() {
                f.push(finals.finish()?);
            }
        }
        self.emitted_upto = self.emitted_upto.max(watermark);
        // Counter samples are needed back to the oldest 15-minute bucket that may
        // still be re-emitted.
        let keep_from = bucket_start(
            watermark.saturating_sub(horizon),
            Width::FifteenMinutes.micros(),
        );
        for t in &mut self.tracks {
            t.prune_before(keep_from);
        }
        Ok(out)
    }
}
