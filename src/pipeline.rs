//! Runs a source through the stages into a sink: decode -> the stage list (windows,
//! daily health; see `crate::stage`) -> sink, one micro-batch per step, and the final
//! flush of a bounded input. The sink writes flush N in a task of its own while the
//! engine computes flush N+1. Keeps the books: every message is a raw row, a dead
//! letter or a counted duplicate.
//!
//! `run_pipeline` is the job: it builds the sink, the state store, the source and the
//! output topics from a `PipelineConfig`, stops gracefully on SIGTERM or Ctrl-C, and
//! returns the run's `RunReport`.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use tracing::{debug, info, warn};

use crate::checkpoint;
use crate::config::{PipelineConfig, SinkConfig};
use crate::db::state::StateStore;
use crate::dump::Message;
use crate::event::SoftReason;
use crate::event::columns::RawColumns;
use crate::event::dead_letter::{DeadLetter, DeadReason, dead_letters_to_batch};
use crate::event::decoder::{decode_batch, too_late_letter};
use crate::health::ScoredDay;
use crate::health::predict::predictions_to_batch;
use crate::health::scores::scores_to_batch;
use crate::internal_events::{
    BatchReceived, CheckpointsTaken, DeadLettered, DuplicatesDropped, EngineState, Events,
    FlushStored, PartitionsRestored, RowsAdmitted, RowsEmitted, SoftInvalid, SourcePaused, Tally,
    TooLate, TopicMessagesProduced,
};
use crate::progress::{InFlight, PartitionCheckpoint, Rebalance, SourcePosition};
use crate::shutdown::Shutdown;
use crate::sink::{FlushSet, Sink, TopicSink};
use crate::source::Source;
use crate::stage::{Engine, StepOutput};
use crate::window::GpuInfo;
use crate::window::operator::RowStatus;

/// The books of one run: its counts (`Tally`, read through `Deref`: `report.messages`)
/// and what the run adds at its end.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Every count, as the run's internal events added them up.
    pub counts: Tally,
    pub elapsed_s: f64,
    /// Kafka timestamp to stored flush, per message (Kafka sources).
    pub latency: Option<LatencySummary>,
    /// The latest scored day of every GPU.
    pub latest: Vec<ScoredDay>,
    pub gpus: Vec<GpuInfo>,
}

impl std::ops::Deref for RunReport {
    type Target = Tally;

    fn deref(&self) -> &Tally {
        &self.counts
    }
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

impl RunReport {
    /// Messages that became neither a raw row nor a counted duplicate. A `too_late`
    /// event is a raw row too, and a `db_rejected` letter is a row (raw or derived)
    /// that the database refused after the engine admitted it.
    pub fn hard_dead_letters(&self) -> u64 {
        let soft = [
            DeadReason::TooLate.as_str(),
            DeadReason::DbRejected.as_str(),
        ];
        self.dead_letters
            .iter()
            .filter(|(r, _)| !soft.contains(*r))
            .map(|(_, n)| n)
            .sum()
    }

    /// messages = raw rows + hard dead letters + duplicates.
    pub fn books_balance(&self) -> bool {
        self.messages == self.raw_rows + self.hard_dead_letters() + self.duplicates
    }
}

/// Runs a pipeline config to the end of its (bounded) input, or until SIGTERM or
/// Ctrl-C; the database URL (TimescaleDB sink) comes from the environment.
pub async fn run_pipeline(cfg: PipelineConfig) -> Result<RunReport> {
    let url = match &cfg.sink {
        SinkConfig::Timescale { .. } => Some(crate::db::database_url_from_env()?),
        SinkConfig::Parquet { .. } => None,
    };
    run(cfg, url.as_deref()).await
}

/// `run_pipeline` with the TimescaleDB sink's database at `database_url`.
pub async fn run_pipeline_with_database(
    cfg: PipelineConfig,
    database_url: &str,
) -> Result<RunReport> {
    run(cfg, Some(database_url)).await
}

async fn run(cfg: PipelineConfig, database_url: Option<&str>) -> Result<RunReport> {
    info!(config = %cfg.redacted(), "effective configuration");
    if let Some(m) = &cfg.metrics {
        crate::metrics::serve(&m.listen).await?;
    }
    let events = Events::new();
    // The sink first: it applies the schema that holds the offsets the source starts at.
    let (sink, store) = match (&cfg.sink, database_url) {
        (SinkConfig::Timescale { consumer_group, .. }, Some(url)) => {
            let group = consumer_group.clone().unwrap_or_else(|| cfg.name.clone());
            (
                Sink::from_config(&cfg.sink, &cfg.name, url).await?,
                Some(StateStore::new(url, &group)),
            )
        }
        (SinkConfig::Timescale { .. }, None) => {
            anyhow::bail!("the TimescaleDB sink needs a database URL")
        }
        (SinkConfig::Parquet { .. }, _) => {
            (Sink::from_config(&cfg.sink, &cfg.name, "").await?, None)
        }
    };
    let source = Source::from_config(&cfg.source, store, &cfg.name, &events)?;
    let topics = match &cfg.topics {
        Some(t) => Some(TopicSink::connect(t).await?),
        None => None,
    };
    Pipeline::with_events(cfg, events)
        .with_shutdown(Shutdown::on_signals())
        .with_topics(topics)
        .run(source, sink)
        .await
}

/// The next offset to read per (topic, partition) after these messages.
fn next_offsets(msgs: &[Message]) -> Vec<SourcePosition> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in msgs {
        let e = next.entry((m.topic.as_str(), m.partition)).or_insert(0);
        *e = (*e).max(m.offset + 1);
    }
    next.into_iter()
        .map(|((topic, partition), next_offset)| SourcePosition {
            topic: topic.to_owned(),
            partition,
            next_offset,
        })
        .collect()
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One run of a source through the engine into a sink.
pub struct Pipeline {
    cfg: PipelineConfig,
    /// The stages and the fleet of GPUs they share.
    engine: Engine,
    /// What happened, counted once for the report and the metrics.
    events: Events,
    /// The latest scored day of each GPU, for the run summary.
    latest: BTreeMap<u32, ScoredDay>,
    /// The next offset per (topic, partition) the engine state stands at.
    positions: BTreeMap<(String, i32), i64>,
    /// When the last checkpoint was taken (none yet: the next flush takes one).
    last_checkpoint: Option<Instant>,
    /// Whether the engine took input or emitted since the last checkpoint (a quiet
    /// stream is not checkpointed over and over).
    changed: bool,
    /// Resolves when the process is asked to stop.
    shutdown: Shutdown,
    /// Output topics beside the sink.
    topics: Option<TopicSink>,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Self {
        Self::with_events(cfg, Events::new())
    }

    fn with_events(cfg: PipelineConfig, events: Events) -> Self {
        Pipeline {
            engine: Engine::new(crate::stage::standard(&cfg)),
            events,
            cfg,
            latest: BTreeMap::new(),
            positions: BTreeMap::new(),
            last_checkpoint: None,
            changed: false,
            shutdown: Shutdown::never(),
            topics: None,
        }
    }

    /// Also produces every flush's rollups and dead letters to Kafka topics, before
    /// the flush is stored (at least once).
    pub fn with_topics(mut self, topics: Option<TopicSink>) -> Self {
        self.topics = topics;
        self
    }

    /// Stops early, without closing windows, when `shutdown` fires: the state is
    /// stored (where the source resumes from checkpoints) and the source leaves its
    /// consumer group, so that other members take its partitions over at once.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
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
        let events = self.events.clone();
        let writer = tokio::spawn(async move {
            let written = async {
                // 1 ms to 7 days at 3 significant digits (a backfill reads old messages).
                let mut latency =
                    hdrhistogram::Histogram::<u64>::new_with_bounds(1, 604_800_000, 3)
                        .context("creating the latency histogram")?;
                while let Some(mut set) = rx.recv().await {
                    let offsets = set.offsets.clone();
                    let arrivals = std::mem::take(&mut set.arrivals_ms);
                    let started = Instant::now();
                    if let Some(t) = &topics {
                        let count = t
                            .write(&set, &events)
                            .await
                            .context("producing to the output topics")?;
                        events.emit(TopicMessagesProduced { count });
                    }
                    let rows = sink
                        .write(set, &events)
                        .await
                        .context("writing to the sink")?;
                    let now = now_ms();
                    let waited: Vec<u64> =
                        arrivals.iter().map(|a| (now - a).max(1) as u64).collect();
                    for &ms in &waited {
                        latency.saturating_record(ms);
                    }
                    events.emit(FlushStored {
                        rows: &rows,
                        took: started.elapsed(),
                        waited_ms: &waited,
                    });
                    stored.stored();
                    let _ = ack_tx.send(offsets);
                }
                sink.close(&events).await.context("closing the sink")?;
                Ok::<_, anyhow::Error>(LatencySummary::of(&latency))
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
        let latency = written?;
        produced?;
        let report = RunReport {
            counts: self.events.tally(),
            latency,
            elapsed_s: start.elapsed().as_secs_f64(),
            latest: self.latest.into_values().collect(),
            gpus: self.engine.fleet().gpus().to_vec(),
        };
        if !report.books_balance() {
            warn!(?report.messages, "books do not balance");
        }
        Ok(report)
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
            let batch = tokio::select! {
                b = source.next_batch(self.cfg.engine.batch_size) => Some(b?),
                _ = self.shutdown.requested() => None,
            };
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
            self.engine.on_assign(&source.partitions(), Instant::now());
            // An empty batch is the source's tick while nothing arrives: the watermark
            // may move by idleness and close windows and days.
            let mut set = self.step(&msgs).await?;
            self.changed |= !msgs.is_empty() || set.has_rows();
            if checkpoints && self.changed && self.checkpoint_due() {
                set.checkpoints = self.checkpoint()?;
            }
            if msgs.is_empty() && !set.has_rows() && set.checkpoints.is_empty() {
                continue;
            }
            set.arrivals_ms = source.take_arrivals();
            in_flight.sent();
            let waiting = Instant::now();
            // The sink is behind when its one waiting slot is taken: stop fetching.
            let paused = tx.capacity() == 0;
            if paused {
                source.pause();
                self.events.emit(SourcePaused);
            }
            let sent = tx.send(set).await;
            if paused {
                source.resume();
            }
            if sent.is_err() {
                return Ok(());
            }
            // Backpressure (a slow or unavailable database) is not partition idleness.
            self.engine.on_stall(waiting.elapsed(), Instant::now());
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
    fn checkpoint(&mut self) -> Result<Vec<PartitionCheckpoint>> {
        let positions: Vec<SourcePosition> = self
            .positions
            .iter()
            .map(|((topic, partition), next)| SourcePosition {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
            })
            .collect();
        let stored = checkpoint::capture(self.engine.stages(), self.engine.fleet(), &positions)?;
        self.last_checkpoint = Some(Instant::now());
        self.changed = false;
        self.events.emit(CheckpointsTaken {
            count: stored.len() as u64,
        });
        Ok(stored)
    }

    /// Loads the state of partitions this instance now owns and drops the state of
    /// those it lost.
    fn rebalance(&mut self, change: Rebalance) -> Result<()> {
        if change.is_empty() {
            return Ok(());
        }
        let (stages, fleet) = self.engine.parts_mut();
        checkpoint::forget(stages, fleet, &change.lost);
        self.positions.retain(|(_, p), _| !change.lost.contains(p));
        // Partitions read from their start hold the watermark back before their first
        // event, also against a checkpoint restored in the same rebalance.
        self.engine.on_assign(&change.started, Instant::now());
        let (stages, fleet) = self.engine.parts_mut();
        checkpoint::restore(stages, fleet, &change.restored, Instant::now())
            .context("restoring checkpoints")?;
        for c in &change.restored {
            self.positions
                .insert((c.topic.clone(), c.partition), c.next_offset);
        }
        self.events.emit(PartitionsRestored {
            count: change.restored.len() as u64,
        });
        Ok(())
    }

    /// Processes one micro-batch of messages.
    pub(crate) async fn step(&mut self, msgs: &[Message]) -> Result<FlushSet> {
        let limits = self.cfg.validation.decode_limits();
        let decoded = decode_batch(msgs, &limits, self.cfg.engine.decode_threads())?;
        let mut by_topic: BTreeMap<&str, u64> = BTreeMap::new();
        for msg in msgs {
            *by_topic.entry(msg.topic.as_str()).or_default() += 1;
        }
        self.events.emit(BatchReceived {
            by_topic: &by_topic,
        });
        for (i, n) in decoded.soft.iter().enumerate() {
            if *n > 0 {
                self.events.emit(SoftInvalid {
                    reason: SoftReason::ALL[i].as_str(),
                    count: *n,
                });
            }
        }
        let mut dead = decoded.dead;
        let partitions: Vec<i32> = decoded
            .row_message
            .iter()
            .map(|&i| msgs[i].partition)
            .collect();
        let out = self
            .engine
            .step(&decoded.raw, &partitions, &self.events, Instant::now())
            .await?;
        let cols = RawColumns::new(&decoded.raw);
        let mut keep = Vec::with_capacity(out.admission.status.len());
        let (mut duplicates, mut too_late, mut invalid) = (0u64, 0u64, 0u64);
        for (row, status) in out.admission.status.iter().enumerate() {
            match status {
                RowStatus::Accepted => keep.push(true),
                RowStatus::Duplicate => {
                    duplicates += 1;
                    keep.push(false);
                }
                RowStatus::TooLate { watermark } => {
                    too_late += 1;
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
                invalid += 1;
            }
        }
        if duplicates > 0 {
            self.events.emit(DuplicatesDropped { count: duplicates });
        }
        if too_late > 0 {
            self.events.emit(TooLate { count: too_late });
        }
        let raw = filter_record_batch(&decoded.raw, &BooleanArray::from(keep))?;
        self.events.emit(RowsAdmitted {
            rows: raw.num_rows() as u64,
            invalid,
        });
        debug!(
            messages = msgs.len(),
            watermark = %out.emission.watermark,
            updates_1m = out.emission.updates_1m.iter().map(|b| b.num_rows()).sum::<usize>(),
            "step"
        );
        let mut set = self.assemble(out, dead)?;
        set.raw.push(raw);
        set.offsets = next_offsets(msgs);
        for p in &set.offsets {
            let at = self
                .positions
                .entry((p.topic.clone(), p.partition))
                .or_insert(p.next_offset);
            *at = (*at).max(p.next_offset);
        }
        Ok(set)
    }

    /// The end of a bounded input: flushes every window and closes every day.
    pub(crate) fn finish(&mut self) -> Result<FlushSet> {
        let out = self.engine.finish(&self.events, Instant::now())?;
        self.assemble(out, Vec::new())
    }

    /// The flush of one step: rollups, scores and predictions, dead letters.
    fn assemble(&mut self, out: StepOutput, dead: Vec<DeadLetter>) -> Result<FlushSet> {
        let StepOutput {
            emission,
            scored,
            behind_newest_us,
            ..
        } = out;
        let mut reasons: BTreeMap<&'static str, u64> = BTreeMap::new();
        for d in &dead {
            *reasons.entry(d.reason.as_str()).or_default() += 1;
        }
        for (reason, count) in reasons {
            self.events.emit(DeadLettered { reason, count });
        }
        let rows = |b: &[datafusion::arrow::record_batch::RecordBatch]| {
            b.iter().map(|b| b.num_rows() as u64).sum::<u64>()
        };
        self.events.emit(RowsEmitted {
            rollup_1m: rows(&emission.finals_1m),
            rollup_15m: rows(&emission.finals_15m),
            scores: scored.len() as u64,
            predictions: scored.iter().filter(|s| s.score.is_scored()).count() as u64,
            grades: scored.iter().map(|s| s.score.grade).collect(),
        });
        let size = self.engine.state_size();
        let watermark_delay = emission.watermark.time_us().and_then(|w| {
            let behind = now_ms() * 1000 - w;
            (behind >= 0).then(|| std::time::Duration::from_micros(behind as u64))
        });
        self.events.emit(EngineState {
            state_bytes: size.approx_bytes,
            gpus: size.gpus,
            open_1m: size.open_1m,
            open_15m: size.open_15m,
            watermark_delay,
            behind_newest_s: behind_newest_us.map(|us| us as f64 / 1e6),
        });
        let gpus = self.engine.fleet().gpus();
        let mut set = FlushSet {
            updates_1m: emission.updates_1m,
            updates_15m: emission.updates_15m,
            finals_1m: emission.finals_1m,
            finals_15m: emission.finals_15m,
            ..Default::default()
        };
        if !scored.is_empty() {
            set.scores.push(scores_to_batch(&scored, gpus)?);
            set.predictions.push(predictions_to_batch(&scored, gpus)?);
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
