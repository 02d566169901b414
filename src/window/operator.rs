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
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use datafusion::arrow::array::Array;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::bucket::{MINUTE_US, Width, bucket_start};
use super::counter::{COUNTERS, CounterTrack, CounterValues, N_COUNTERS};
use super::fleet::{Fleet, GpuInfo};
use super::partial::{InputColumns, PartialAggregator};
use super::rollup::{BucketState, ROLLUP_METRICS, RollupBuilder};
use super::watermark::{Watermark, Watermarks};
use crate::event::columns::RawColumns;
use crate::event::schema::{ECC_DBE_VOLATILE, THROTTLE};

/// Event-time settings (DESIGN 3).
#[derive(Debug, Clone, Copy)]
pub struct WindowConfig {
    pub allowed_lateness_us: i64,
    pub late_horizon_us: i64,
    /// `None`: partitions are never idle (a file source reads them one after another).
    pub idle_timeout: Option<Duration>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            allowed_lateness_us: 60 * 1_000_000,
            late_horizon_us: 10 * MINUTE_US,
            idle_timeout: Some(Duration::from_secs(30)),
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
    /// Beyond the late horizon of `watermark` (the row's partition's, see `ingest`;
    /// always a time, µs: nothing is too late before the first event): lands in the
    /// raw table, changes no rollup, dead-lettered.
    TooLate { watermark: i64 },
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
    pub watermark: Watermark,
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

/// The window stage's state. GPUs are the pipeline's `Fleet` ids.
pub struct WindowOperator {
    cfg: WindowConfig,
    aggregator: PartialAggregator,
    /// Counter samples per GPU id (also the de-duplication index).
    tracks: Vec<CounterTrack>,
    w1: Windows,
    w15: Windows,
    watermarks: Watermarks,
    /// Buckets ending at or before this were emitted.
    emitted_upto: Watermark,
}

impl WindowOperator {
    pub fn new(cfg: WindowConfig) -> Self {
        WindowOperator {
            cfg,
            aggregator: PartialAggregator::default(),
            tracks: Vec::new(),
            w1: Windows::default(),
            w15: Windows::default(),
            watermarks: Watermarks::new(cfg.allowed_lateness_us, cfg.idle_timeout),
            emitted_upto: Watermark::Before,
        }
    }

    /// Partitions the source reads, before their first event (see `Watermarks::expect`).
    pub fn expect_partitions(&mut self, partitions: &[i32], now: Instant) {
        for &p in partitions {
            self.watermarks.expect(p, now);
        }
    }

    pub fn watermark(&self) -> Watermark {
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
            gpus: self.tracks.len(),
            open_1m: self.w1.open.len(),
            open_15m: self.w15.open.len(),
            counter_samples: samples,
            approx_bytes: (self.w1.open.len() + self.w15.open.len()) * bucket + sample_bytes,
        }
    }

    /// The GPU's id in `fleet`, with room for its state here.
    fn intern(
        &mut self,
        fleet: &mut Fleet,
        uuid: &str,
        hostname: &str,
        model: Option<&str>,
    ) -> u32 {
        let id = fleet.intern(uuid, hostname, model);
        if self.tracks.len() <= id as usize {
            self.tracks
                .resize_with(id as usize + 1, CounterTrack::default);
        }
        id
    }

    /// Admits a raw batch, merges its accepted rows into the windows, advances the
    /// watermark and emits what closed. `partitions[i]` is row i's source partition.
    #[cfg(test)]
    pub async fn ingest(
        &mut self,
        fleet: &mut Fleet,
        batch: &RecordBatch,
        partitions: &[i32],
        now: Instant,
    ) -> Result<(Admission, Emission)> {
        let (admission, late) = self.admit(fleet, batch, partitions, now).await?;
        let mut emission = self.close(fleet, now)?;
        (emission.late_updates, emission.behind_watermark) = late;
        Ok((admission, emission))
    }

    /// Admits a raw batch and merges its accepted rows into the windows; returns each
    /// row's verdict, and how many accepted rows were late: (landed in an emitted
    /// window, landed behind the watermark).
    pub async fn admit(
        &mut self,
        fleet: &mut Fleet,
        batch: &RecordBatch,
        partitions: &[i32],
        now: Instant,
    ) -> Result<(Admission, (u64, u64))> {
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
            let gpu = self.intern(
                fleet,
                cols.gpu_uuid.value(row),
                cols.hostname.value(row),
                model,
            );
            admission.gpu.push(gpu);
            // The watermark moves row by row, so that what counts as late does not
            // depend on how the input was cut into batches. Too late is judged by the
            // row's own partition (never ahead of the pipeline's watermark): partition
            // order is fixed, so the verdict does not depend on how a consumer
            // interleaves partitions, and a replay or restart repeats it.
            let own = match partitions.get(row) {
                Some(&p) => {
                    fleet.set_home(gpu, p);
                    self.watermarks.observe(p, t, now);
                    self.watermarks.of_partition(p)
                }
                None => None,
            };
            let watermark = self.watermarks.advance(now);
            let verdict_mark = own.unwrap_or(watermark).max(watermark);
            let minute = bucket_start(t, MINUTE_US);
            if minute + MINUTE_US + horizon <= verdict_mark.bound_us() {
                admission.status.push(RowStatus::TooLate {
                    watermark: verdict_mark.bound_us(),
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
            if minute + MINUTE_US <= watermark.bound_us() {
                behind_watermark += 1;
            }
            if minute + MINUTE_US <= self.emitted_upto.bound_us() {
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
            let emitted_upto = self.emitted_upto.bound_us();
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
                if p.bucket_start_us + MINUTE_US <= emitted_upto {
                    self.w1.dirty.insert((p.bucket_start_us, p.gpu));
                }
                if q + fifteen <= emitted_upto {
                    self.w15.dirty.insert((q, p.gpu));
                }
            }
        }

        Ok((admission, (late_updates, behind_watermark)))
    }

    /// Advances the watermark to wall time `now` and emits what closed.
    pub fn close(&mut self, fleet: &Fleet, now: Instant) -> Result<Emission> {
        let watermark = self.watermarks.advance(now);
        self.emit(fleet, watermark)
    }

    /// Buckets ending at or before this were emitted.
    pub fn emitted_upto(&self) -> Watermark {
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

    /// Every GPU's window state, indexed by GPU id, in one pass over the open windows.
    pub fn export(&self, fleet: &Fleet) -> Vec<GpuWindows> {
        let mut out: Vec<GpuWindows> = fleet
            .gpus()
            .iter()
            .enumerate()
            .map(|(id, info)| GpuWindows {
                info: info.clone(),
                track: self.tracks.get(id).cloned().unwrap_or_default(),
                w1: Vec::new(),
                w15: Vec::new(),
            })
            .collect();
        for (windows, pick) in [(&self.w1, 0), (&self.w15, 1)] {
            for (&(start, gpu), state) in &windows.open {
                let dirty = windows.dirty.contains(&(start, gpu));
                let Some(g) = out.get_mut(gpu as usize) else {
                    continue;
                };
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
        watermark: Watermark,
        emitted_upto: Watermark,
        now: Instant,
    ) {
        if self.watermarks.restore(clocks, watermark, now) {
            self.emitted_upto = emitted_upto;
        }
    }

    /// Takes over one GPU's window state from a checkpoint; returns its id. A window
    /// the checkpoint had not emitted but this operator has passed is emitted next.
    pub fn import(&mut self, fleet: &mut Fleet, state: GpuWindows, home: i32) -> u32 {
        let GpuWindows {
            info,
            track,
            w1,
            w15,
        } = state;
        let gpu = self.intern(fleet, &info.uuid, &info.hostname, info.model.as_deref());
        if fleet.home(gpu).is_some() {
            self.forget(&[gpu]);
        }
        self.tracks[gpu as usize] = track;
        fleet.set_home(gpu, home);
        let passed = self.emitted_upto.bound_us();
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
        let mut gone = vec![false; self.tracks.len()];
        for &g in gpus {
            if let Some(x) = gone.get_mut(g as usize) {
                *x = true;
            }
            if let Some(t) = self.tracks.get_mut(g as usize) {
                *t = CounterTrack::default();
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
    pub fn finish(&mut self, fleet: &Fleet) -> Result<Emission> {
        let w = self.watermarks.close_all();
        self.emit(fleet, w)
    }

    /// A late row in an emitted minute: that minute and every later emitted bucket of
    /// the GPU may change (counter steps), so they are re-emitted.
    fn mark_late(&mut self, gpu: u32, minute: i64) {
        let emitted_upto = self.emitted_upto.bound_us();
        let mut m = minute;
        while m + MINUTE_US <= emitted_upto {
            if self.w1.open.contains_key(&(m, gpu)) {
                self.w1.dirty.insert((m, gpu));
            }
            m += MINUTE_US;
        }
        let width = Width::FifteenMinutes.micros();
        let mut q = bucket_start(minute, width);
        while q + width <= emitted_upto {
            if self.w15.open.contains_key(&(q, gpu)) {
                self.w15.dirty.insert((q, gpu));
            }
            q += width;
        }
    }

    fn emit(&mut self, fleet: &Fleet, mark: Watermark) -> Result<Emission> {
        let mut out = Emission {
            watermark: mark,
            ..Default::default()
        };
        if mark <= self.emitted_upto && self.w1.dirty.is_empty() && self.w15.dirty.is_empty() {
            return Ok(out);
        }
        let (watermark, emitted_upto) = (mark.bound_us(), self.emitted_upto.bound_us());
        let horizon = self.cfg.late_horizon_us;
        for width in [Width::OneMinute, Width::FifteenMinutes] {
            let w = width.micros();
            let (tracks, gpus) = (&self.tracks, fleet.gpus());
            let windows = match width {
                Width::OneMinute => &mut self.w1,
                Width::FifteenMinutes => &mut self.w15,
            };
            let mut updates = RollupBuilder::default();
            // Newly closed: end in (emitted_upto, watermark].
            let lo = emitted_upto.saturating_sub(w).saturating_add(1);
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
        self.emitted_upto = self.emitted_upto.max(mark);
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

#[cfg(test)]
mod tests {
    //! The operator's invariants on hand-worked inputs: what is emitted when, late rows
    //! re-emitted, rows beyond the horizon judged too late, duplicates dropped, idle
    //! partitions not holding event time back.

    use std::time::{Duration, Instant};

    use super::*;
    use crate::window::test_support::{S, Sample, T0, batch, rows};

    fn operator() -> (WindowOperator, Fleet) {
        (
            WindowOperator::new(WindowConfig::default()),
            Fleet::default(),
        )
    }

    async fn ingest(
        op: &mut WindowOperator,
        fleet: &mut Fleet,
        samples: &[Sample],
        now: Instant,
    ) -> (Admission, Emission) {
        let (raw, parts) = batch(samples);
        op.ingest(fleet, &raw, &parts, now).await.unwrap()
    }

    const A: &str = "GPU-0000000a";
    const B: &str = "GPU-0000000b";

    #[tokio::test]
    async fn windows_close_when_the_watermark_passes_their_end() {
        let (mut op, mut fleet) = operator();
        let now = Instant::now();
        // Minute 0: 50, 60, 70 °C; SBE 5 -> 5 (first bucket: last minus first).
        let (_, e) = ingest(
            &mut op,
            &mut fleet,
            &[
                Sample(0, A, 0, 50.0, 5),
                Sample(10, A, 0, 60.0, 5),
                Sample(20, A, 0, 70.0, 5),
            ],
            now,
        )
        .await;
        // Watermark 20 s - 60 s of lateness: nothing has closed.
        assert_eq!(e.watermark, Watermark::At(T0 - 40 * S));
        assert!(rows(&e.updates_1m).is_empty());
        // Minute 1: SBE 7 (delta 2), minute 2: SBE 10 (delta 3); the watermark reaches
        // 190 - 60 = 130 s, past the ends of minutes 0 and 1 but not 2.
        let (_, e) = ingest(
            &mut op,
            &mut fleet,
            &[Sample(70, A, 0, 40.0, 7), Sample(190, A, 0, 40.0, 10)],
            now,
        )
        .await;
        assert_eq!(e.watermark, Watermark::At(T0 + 130 * S));
        assert_eq!(
            rows(&e.updates_1m),
            vec![
                (0, A.to_owned(), 60.0, 3, Some(0)),
                (60, A.to_owned(), 40.0, 1, Some(2)),
            ]
        );
        // Nothing is final before the late horizon has passed too.
        assert!(e.finals_1m.is_empty());
        let rest = op.finish(&fleet).unwrap();
        // At the end of input minute 2 comes out with the rest of the increase, and
        // every row is final: the deltas add up to the counter's increase, 10 - 5.
        let finals = rows(&rest.finals_1m);
        assert_eq!(finals.len(), 3);
        assert_eq!(finals[2], (180, A.to_owned(), 40.0, 1, Some(3)));
        let total: i64 = finals.iter().filter_map(|r| r.4).sum();
        assert_eq!(total, 10 - 5);
        let fifteen = rows(&rest.finals_15m);
        assert_eq!(fifteen.len(), 1);
        assert_eq!(fifteen[0].3, 5, "one 15-minute row of all five samples");
    }

    #[tokio::test]
    async fn a_late_row_within_the_horizon_reemits_its_window() {
        let (mut op, mut fleet) = operator();
        let now = Instant::now();
        ingest(
            &mut op,
            &mut fleet,
            &[
                Sample(0, A, 0, 50.0, 0),
                Sample(10, A, 0, 60.0, 0),
                Sample(20, A, 0, 70.0, 0),
                Sample(200, A, 0, 80.0, 0),
            ],
            now,
        )
        .await;
        // Minute 0 was emitted (watermark 140 s); 90 °C at 30 s arrives late.
        let (adm, e) = ingest(&mut op, &mut fleet, &[Sample(30, A, 0, 90.0, 0)], now).await;
        assert_eq!(adm.status, vec![RowStatus::Accepted]);
        assert_eq!(e.late_updates, 1);
        assert_eq!(e.behind_watermark, 1);
        assert_eq!(
            rows(&e.updates_1m),
            vec![(
                0,
                A.to_owned(),
                (50.0 + 60.0 + 70.0 + 90.0) / 4.0,
                4,
                Some(0)
            )]
        );
    }

    #[tokio::test]
    async fn a_row_beyond_the_horizon_is_too_late_and_changes_nothing() {
        let (mut op, mut fleet) = operator();
        let now = Instant::now();
        ingest(
            &mut op,
            &mut fleet,
            &[Sample(0, A, 0, 50.0, 0), Sample(2000, A, 0, 50.0, 0)],
            now,
        )
        .await;
        // Watermark 1940 s: minute 0 ended at 60 s, plus the 600 s horizon < 1940 s.
        let (adm, e) = ingest(
            &mut op,
            &mut fleet,
            &[Sample(30, A, 0, 99.0, 0), Sample(1990, A, 0, 50.0, 0)],
            now,
        )
        .await;
        assert_eq!(
            adm.status,
            vec![
                RowStatus::TooLate {
                    watermark: T0 + 1940 * S
                },
                RowStatus::Accepted
            ]
        );
        assert!(
            rows(&e.updates_1m).iter().all(|r| r.0 != 0),
            "minute 0 is not emitted again"
        );
        let finals = rows(&op.finish(&fleet).unwrap().finals_1m);
        assert!(finals.iter().all(|r| r.0 != 0));
    }

    #[tokio::test]
    async fn the_first_of_two_samples_with_one_key_wins() {
        let (mut op, mut fleet) = operator();
        let now = Instant::now();
        let (adm, _) = ingest(
            &mut op,
            &mut fleet,
            &[
                Sample(0, A, 0, 50.0, 0),
                Sample(0, A, 0, 99.0, 0),
                Sample(0, B, 1, 99.0, 0),
            ],
            now,
        )
        .await;
        assert_eq!(
            adm.status,
            vec![
                RowStatus::Accepted,
                RowStatus::Duplicate,
                RowStatus::Accepted
            ]
        );
        // Across batches too.
        let (adm, _) = ingest(&mut op, &mut fleet, &[Sample(0, A, 0, 10.0, 0)], now).await;
        assert_eq!(adm.status, vec![RowStatus::Duplicate]);
        let finals = rows(&op.finish(&fleet).unwrap().finals_1m);
        assert_eq!(
            finals,
            vec![
                (0, A.to_owned(), 50.0, 1, Some(0)),
                (0, B.to_owned(), 99.0, 1, Some(0)),
            ]
        );
    }

    #[tokio::test]
    async fn an_idle_partition_stops_holding_the_watermark_back() {
        let (mut op, mut fleet) = operator();
        let t0 = Instant::now();
        // Both partitions are read: each holds the watermark back until it goes idle.
        op.expect_partitions(&[0, 1], t0);
        let (_, e) = ingest(
            &mut op,
            &mut fleet,
            &[Sample(1000, A, 0, 50.0, 0), Sample(100, B, 1, 50.0, 0)],
            t0,
        )
        .await;
        // The slower partition decides.
        assert_eq!(e.watermark, Watermark::At(T0 + 40 * S));
        // 31 s of wall time later (idle timeout 30 s) only partition 0 speaks.
        let later = t0 + Duration::from_secs(31);
        let (_, e) = ingest(&mut op, &mut fleet, &[Sample(1100, A, 0, 50.0, 0)], later).await;
        assert_eq!(e.watermark, Watermark::At(T0 + 1040 * S));
        // Partition 1's minute at 100 s closed with it.
        assert!(
            rows(&e.updates_1m).iter().any(|r| r.0 == 60 && r.1 == B),
            "{:?}",
            rows(&e.updates_1m)
        );
        // Before any event nothing is a time.
        let (fresh, _) = operator();
        assert_eq!(fresh.watermark(), Watermark::Before);
    }
}
