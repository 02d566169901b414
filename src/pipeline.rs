//! Wires a source through the engine into a sink: decode -> admit and window ->
//! daily health -> sink, one micro-batch per step, and the final flush of a bounded
//! input. Keeps the books: every message is a raw row, a dead letter or a counted
//! duplicate.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use tracing::{debug, info, warn};

use crate::checkpoint;
use crate::config::PipelineConfig;
use crate::event::SoftReason;
use crate::event::columns::RawColumns;
use crate::event::dead_letter::{DeadReason, dead_letters_to_batch};
use crate::event::decoder::{decode_batch, too_late_letter};
use crate::health::predict::predictions_to_batch;
use crate::health::scores::scores_to_batch;
use crate::health::{HealthTracker, ScoredDay};
use crate::metrics::metrics;
use crate::progress::{InFlight, Rebalance};
use crate::sink::{FlushSet, Sink, SourcePosition, TopicSink};
use crate::source::Source;
use crate::window::WindowOperator;
use crate::window::operator::{Emission, GpuInfo, RowStatus};

/// Counters of one run.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub messages: u64,
    pub raw_rows: u64,
    pub duplicates: u64,
    pub too_late: u64,
    pub late_updates: u64,
    pub late_events: u64,
    pub dead_letters: BTreeMap<&'static str, u64>,
    pub soft_errors: BTreeMap<&'static str, u64>,
    pub invalid_rows: u64,
    pub rollup_1m_rows: u64,
    pub rollup_15m_rows: u64,
    pub score_rows: u64,
    pub elapsed_s: f64,
    pub peak_state_bytes: usize,
    /// Partition checkpoints stored with the data, and loaded from it.
    pub checkpoints_written: u64,
    pub partitions_restored: u64,
    /// Messages the output topics acknowledged (rollup rows and dead letters).
    pub topic_messages: u64,
    /// Kafka timestamp to stored flush, per message (Kafka sources).
    pub latency: Option<LatencySummary>,
    /// Times the source was paused because the sink was behind.
    pub pauses: u64,
    /// The latest scored day of every GPU.
    pub latest: Vec<ScoredDay>,
    pub gpus: Vec<GpuInfo>,
}

/// End-to-end latency quantiles, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct LatencySummary {
    pub messages: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl LatencySummary {
    fn of(h: &hdrhistogram::Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| LatencySummary {
            messages: h.len(),
            p50_ms: h.value_at_quantile(0.5),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        })
    }
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl RunReport {
    /// Messages that became neither a raw row nor a counted duplicate.
    pub fn hard_dead_letters(&self) -> u64 {
        self.dead_letters
            .iter()
            .filter(|(r, _)| **r != DeadReason::TooLate.as_str())
            .map(|(_, n)| n)
            .sum()
    }

    /// messages = raw rows + hard dead letters + duplicates.
    pub fn books_balance(&self) -> bool {
        self.messages == self.raw_rows + self.hard_dead_letters() + self.duplicates
    }
}

/// The next offset to read per (topic, partition) after these messages.
fn next_offsets(msgs: &[crate::dump::Message]) -> Vec<crate::sink::SourcePosition> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in msgs {
        let e = next.entry((m.topic.as_str(), m.partition)).or_insert(0);
        *e = (*e).max(m.offset + 1);
    }
    next.into_iter()
        .map(
            |((topic, partition), next_offset)| crate::sink::SourcePosition {
                topic: topic.to_owned(),
                partition,
                next_offset,
            },
        )
        .collect()
}

pub struct Pipeline {
    cfg: PipelineConfig,
    window: WindowOperator,
    health: HealthTracker,
    report: RunReport,
    latest: BTreeMap<u32, ScoredDay>,
    /// The next offset per (topic, partition) the engine state stands at.
    positions: BTreeMap<(String, i32), i64>,
    last_checkpoint: Option<Instant>,
    /// Becomes true when the process is asked to stop.
    shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// Output topics beside the sink.
    topics: Option<TopicSink>,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Self {
        let wcfg = cfg.window.to_window_config();
        let health = HealthTracker::new(
            cfg.health.sample_interval.as_secs() as u32,
            wcfg.late_horizon_us,
        );
        Pipeline {
            window: WindowOperator::new(wcfg),
            health,
            cfg,
            report: RunReport::default(),
            latest: BTreeMap::new(),
            positions: BTreeMap::new(),
            last_checkpoint: None,
            shutdown: None,
            topics: None,
        }
    }

    /// Also produces every flush's rollups and dead letters to Kafka topics, before
    /// the flush is stored (at least once).
    pub fn with_topics(mut self, topics: Option<TopicSink>) -> Self {
        self.topics = topics;
        self
    }

    /// Stops early, without closing windows, when `stop` turns true: the state is
    /// stored (where the source resumes from checkpoints) and the source leaves its
    /// consumer group, so that other members take its partitions over at once.
    pub fn with_shutdown(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = Some(stop);
        self
    }

    /// Resolves when a shutdown is requested (never without a receiver).
    async fn stop_requested(stop: &mut Option<tokio::sync::watch::Receiver<bool>>) {
        match stop {
            Some(rx) => {
                if rx.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// Runs the source to its end (bounded) and returns the books.
    pub async fn run(mut self, mut source: Source, mut sink: Sink) -> Result<RunReport> {
        let start = Instant::now();
        info!(source = %source.describe(), sink = %sink.describe(), "pipeline starting");
        // The sink writes flush N in its own task while the engine computes flush N+1.
        // The channel holds one flush, so at most three exist at once: memory stays
        // bounded, and a slow or unavailable database pauses the source.
        // Stored positions come back to the source (Kafka commits them for lag monitoring).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<FlushSet>(1);
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<SourcePosition>>();
        let in_flight = source.in_flight();
        let stored = in_flight.clone();
        let topics = self.topics.take();
        let writer = tokio::spawn(async move {
            let written = async {
                let mut produced = 0u64;
                // 1 ms to 7 days at 3 significant digits (a backfill reads old messages).
                let mut latency =
                    hdrhistogram::Histogram::<u64>::new_with_bounds(1, 604_800_000, 3)
                        .context("creating the latency histogram")?;
                let m = metrics();
                while let Some(mut set) = rx.recv().await {
                    let offsets = set.offsets.clone();
                    let arrivals = std::mem::take(&mut set.arrivals_ms);
                    let started = Instant::now();
                    if let Some(t) = &topics {
                        produced += t
                            .write(&set)
                            .await
                            .context("producing to the output topics")?;
                    }
                    let rows = sink.write(set).await.context("writing to the sink")?;
                    m.flush_latency
                        .record([started.elapsed().as_micros() as u64]);
                    for (table, n) in rows {
                        m.rows_written.with_label_values(&[table]).inc_by(n);
                    }
                    let now = now_ms();
                    let waited: Vec<u64> =
                        arrivals.iter().map(|a| (now - a).max(1) as u64).collect();
                    for &ms in &waited {
                        latency.saturating_record(ms);
                    }
                    m.e2e_latency.record(waited);
                    stored.stored();
                    let _ = ack_tx.send(offsets);
                }
                sink.close().await.context("closing the sink")?;
                Ok::<_, anyhow::Error>((produced, LatencySummary::of(&latency)))
            }
            .await;
            // Done or failed, nothing more will be stored: a revoke must not wait on it.
            stored.closed();
            written
        });
        let produced = self
            .produce(&mut source, &tx, &mut ack_rx, &in_flight)
            .await;
        drop(tx);
        let written = writer.await.context("the sink task panicked")?;
        // A sink failure closes the channel, which ends production early; report it first.
        (self.report.topic_messages, self.report.latency) = written?;
        produced?;
        self.report.elapsed_s = start.elapsed().as_secs_f64();
        self.report.latest = self.latest.into_values().collect();
        self.report.gpus = self.window.gpus().to_vec();
        if !self.report.books_balance() {
            warn!(?self.report.messages, "books do not balance");
        }
        Ok(self.report)
    }

    /// Feeds every batch of the source, then the final flush, to the sink task.
    /// Stops early, without error, when the sink task has gone (its error wins).
    async fn produce(
        &mut self,
        source: &mut Source,
        tx: &tokio::sync::mpsc::Sender<FlushSet>,
        acks: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<SourcePosition>>,
        in_flight: &InFlight,
    ) -> Result<()> {
        let checkpoints = source.resumes();
        loop {
            while let Ok(stored) = acks.try_recv() {
                source.stored(&stored);
            }
            let mut stop = self.shutdown.take();
            let batch = tokio::select! {
                b = source.next_batch(self.cfg.engine.batch_size) => Some(b?),
                _ = Self::stop_requested(&mut stop) => None,
            };
            self.shutdown = stop;
            // State of partitions gained or lost in a rebalance during that fetch.
            self.rebalance(source.take_rebalance())?;
            let Some(batch) = batch else {
                // Asked to stop: what was fetched and not handed out is read again by
                // whoever resumes; the open windows stay open in the stored state.
                if checkpoints {
                    let set = FlushSet {
                        checkpoints: self.checkpoint()?,
                        ..Default::default()
                    };
                    in_flight.sent();
                    let _ = tx.send(set).await;
                }
                return Ok(());
            };
            let Some(msgs) = batch else {
                break;
            };
            self.window
                .expect_partitions(&source.partitions(), Instant::now());
            let mut set = self.step(&msgs).await?;
            if checkpoints && self.checkpoint_due() {
                set.checkpoints = self.checkpoint()?;
            }
            set.arrivals_ms = source.take_arrivals();
            in_flight.sent();
            let waiting = Instant::now();
            // The sink is behind when its one waiting slot is taken: stop fetching.
            let paused = tx.capacity() == 0;
            if paused {
                source.pause();
                self.report.pauses += 1;
                metrics().source_pauses.inc();
            }
            let sent = tx.send(set).await;
            if paused {
                source.resume();
            }
            if sent.is_err() {
                return Ok(());
            }
            // Backpressure (a slow or unavailable database) is not partition idleness.
            self.window
                .discount_stall(waiting.elapsed(), Instant::now());
        }
        // The state before the final flush closes every window: a later run over more
        // input goes on from the open windows, not from their forced end.
        let stored = if checkpoints {
            self.checkpoint()?
        } else {
            Vec::new()
        };
        let mut set = self.finish()?;
        set.checkpoints = stored;
        in_flight.sent();
        let _ = tx.send(set).await;
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.last_checkpoint
            .is_none_or(|t| t.elapsed() >= self.cfg.engine.checkpoint_interval)
    }

    /// The engine state of every partition it holds, at the positions reached.
    fn checkpoint(&mut self) -> Result<Vec<crate::progress::PartitionCheckpoint>> {
        let positions: Vec<SourcePosition> = self
            .positions
            .iter()
            .map(|((topic, partition), next)| SourcePosition {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
            })
            .collect();
        let stored = checkpoint::capture(&self.window, &self.health, &positions)?;
        self.last_checkpoint = Some(Instant::now());
        self.report.checkpoints_written += stored.len() as u64;
        Ok(stored)
    }

    /// Loads the state of partitions this instance now owns and drops the state of
    /// those it lost.
    pub fn rebalance(&mut self, change: Rebalance) -> Result<()> {
        if change.is_empty() {
            return Ok(());
        }
        checkpoint::forget(&mut self.window, &mut self.health, &change.lost);
        self.positions.retain(|(_, p), _| !change.lost.contains(p));
        // Partitions read from their start hold the watermark back before their first
        // event, also against a checkpoint restored in the same rebalance.
        self.window
            .expect_partitions(&change.started, Instant::now());
        checkpoint::restore(
            &mut self.window,
            &mut self.health,
            &change.restored,
            Instant::now(),
        )
        .context("restoring checkpoints")?;
        for c in &change.restored {
            self.positions
                .insert((c.topic.clone(), c.partition), c.next_offset);
        }
        self.report.partitions_restored += change.restored.len() as u64;
        if !change.restored.is_empty() {
            info!(
                partitions = change.restored.len(),
                watermark = self.window.watermark(),
                "engine state restored from checkpoints"
            );
        }
        Ok(())
    }

    /// Processes one micro-batch of messages.
    pub async fn step(&mut self, msgs: &[crate::dump::Message]) -> Result<FlushSet> {
        let limits = self.cfg.validation.decode_limits();
        let decoded = decode_batch(msgs, &limits, self.cfg.engine.decode_threads())?;
        self.report.messages += msgs.len() as u64;
        let m = metrics();
        m.batch_messages.record([msgs.len() as u64]);
        let mut by_topic: BTreeMap<&str, u64> = BTreeMap::new();
        for msg in msgs {
            *by_topic.entry(msg.topic.as_str()).or_default() += 1;
        }
        for (topic, n) in by_topic {
            m.events_in.with_label_values(&[topic]).inc_by(n);
        }
        for (i, n) in decoded.soft.iter().enumerate() {
            if *n > 0 {
                let reason = SoftReason::ALL[i].as_str();
                *self.report.soft_errors.entry(reason).or_default() += n;
                m.invalid_values.with_label_values(&[reason]).inc_by(*n);
            }
        }
        let mut dead = decoded.dead;
        let partitions: Vec<i32> = decoded
            .row_message
            .iter()
            .map(|&i| msgs[i].partition)
            .collect();
        let (admission, emission) = self
            .window
            .ingest(&decoded.raw, &partitions, Instant::now())
            .await?;
        let cols = RawColumns::new(&decoded.raw);
        let mut keep = Vec::with_capacity(admission.status.len());
        for (row, status) in admission.status.iter().enumerate() {
            match status {
                RowStatus::Accepted => keep.push(true),
                RowStatus::Duplicate => {
                    self.report.duplicates += 1;
                    m.duplicates.inc();
                    keep.push(false);
                }
                RowStatus::TooLate { watermark } => {
                    self.report.too_late += 1;
                    m.late_events.with_label_values(&["too_late"]).inc();
                    let msg = &msgs[decoded.row_message[row]];
                    dead.push(too_late_letter(
                        msg,
                        cols.gpu_uuid.value(row),
                        cols.time[row],
                        *watermark,
                    ));
                    keep.push(true);
                }
            }
            if !cols.validation_passed.value(row) && keep[row] {
                self.report.invalid_rows += 1;
            }
        }
        self.health.observe(&cols, &admission);
        let raw = filter_record_batch(&decoded.raw, &BooleanArray::from(keep))?;
        self.report.raw_rows += raw.num_rows() as u64;
        debug!(
            messages = msgs.len(),
            watermark = emission.watermark,
            partitions = ?self.window.partition_clocks(),
            updates_1m = emission.updates_1m.iter().map(|b| b.num_rows()).sum::<usize>(),
            "step"
        );
        let mut set = self.assemble(emission, dead)?;
        set.raw.push(raw);
        set.offsets = next_offsets(msgs);
        for p in &set.offsets {
            let at = self
                .positions
                .entry((p.topic.clone(), p.partition))
                .or_insert(p.next_offset);
            *at = (*at).max(p.next_offset);
        }
        let size = self.window.state_size();
        let state = size.approx_bytes + self.health.state_bytes();
        self.report.peak_state_bytes = self.report.peak_state_bytes.max(state);
        m.state_bytes.set(state as i64);
        m.gpus.set(size.gpus as i64);
        m.open_windows
            .with_label_values(&["1m"])
            .set(size.open_1m as i64);
        m.open_windows
            .with_label_values(&["15m"])
            .set(size.open_15m as i64);
        if let Some(behind) = self.window.watermark_delay_us() {
            m.watermark_behind_newest.set(behind as f64 / 1e6);
        }
        // Before the first event and once every partition is done, the watermark is
        // a sentinel, not a time.
        let (watermark, now_us) = (self.window.watermark(), now_ms() * 1000);
        if watermark > 0 && watermark <= now_us {
            m.watermark_delay.set((now_us - watermark) as f64 / 1e6);
        }
        Ok(set)
    }

    /// The end of a bounded input: flushes every window and closes every day.
    pub fn finish(&mut self) -> Result<FlushSet> {
        let emission = self.window.finish()?;
        self.health.apply_deltas(&emission.delta_changes);
        let scored = self.health.finish(self.window.gpus());
        self.assemble_inner(emission, scored, Vec::new())
    }

    fn assemble(
        &mut self,
        emission: Emission,
        dead: Vec<crate::event::DeadLetter>,
    ) -> Result<FlushSet> {
        // Days close only after this step's counter deltas are in.
        self.health.apply_deltas(&emission.delta_changes);
        let scored = self
            .health
            .close_days(emission.watermark, self.window.gpus());
        self.assemble_inner(emission, scored, dead)
    }

    fn assemble_inner(
        &mut self,
        emission: Emission,
        scored: Vec<ScoredDay>,
        dead: Vec<crate::event::DeadLetter>,
    ) -> Result<FlushSet> {
        self.report.late_updates += emission.late_updates;
        if emission.late_updates > 0 {
            debug!(
                rows = emission.late_updates,
                watermark = emission.watermark,
                "late rows merged into emitted windows"
            );
        }
        self.report.late_events += emission.behind_watermark;
        let m = metrics();
        m.late_events
            .with_label_values(&["merged"])
            .inc_by(emission.behind_watermark);
        for d in &dead {
            *self
                .report
                .dead_letters
                .entry(d.reason.as_str())
                .or_default() += 1;
            m.dead_letters.with_label_values(&[d.reason.as_str()]).inc();
        }
        self.report.rollup_1m_rows += emission
            .finals_1m
            .iter()
            .map(|b| b.num_rows() as u64)
            .sum::<u64>();
        self.report.rollup_15m_rows += emission
            .finals_15m
            .iter()
            .map(|b| b.num_rows() as u64)
            .sum::<u64>();
        self.report.score_rows += scored.len() as u64;
        let mut set = FlushSet {
            updates_1m: emission.updates_1m,
            updates_15m: emission.updates_15m,
            finals_1m: emission.finals_1m,
            finals_15m: emission.finals_15m,
            ..Default::default()
        };
        if !scored.is_empty() {
            set.scores
                .push(scores_to_batch(&scored, self.window.gpus())?);
            set.predictions
                .push(predictions_to_batch(&scored, self.window.gpus())?);
        }
        for s in scored {
            self.latest.insert(s.gpu, s);
        }
        if !dead.is_empty() {
            set.dead_letters.push(dead_letters_to_batch(&dead)?);
        }
        Ok(set)
    }
}
