//! The Kafka source (DESIGN 4): one member of a consumer group. Where the sink stores
//! offsets with the data (TimescaleDB), those are the truth: on assignment, every newly
//! owned partition starts at its stored checkpoint (the offset and the engine state at
//! it, read from the state store inside the rebalance callback, on the runtime the
//! consumer is polled on; the beginning when none is stored), and the state goes to
//! the pipeline. Kafka's own committed offsets follow
//! each stored flush, for lag monitoring only.
//!
//! Rebalance: before partitions are given up, every flush already handed to the sink is
//! stored (the callback waits for it), and messages of a lost partition that were
//! fetched but not handed out are dropped: its new owner reads them from the
//! checkpoint, and no write of this instance lands after that owner has started. A
//! partition kept across an eager rebalance goes on from where this instance was.
//!
//! Backpressure: while the sink is behind (its one waiting flush is taken) every
//! assigned partition is paused, so librdkafka stops fetching, and resumed after.
//!
//! A bounded run (a backfill) logs its progress every 5 s, takes the end offsets at
//! start and stops once every assigned partition has reached them and no message has
//! come for `end_linger`:
//! a broker's high watermark can lag behind what it holds (Tansu after multi-record
//! batches), so it is not trusted alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::db::state::{PartitionKey, StateStore};
use crate::dump::Message;
use crate::error::{DbError, ErrorClass, KafkaError, SourceError, chain};
use crate::internal_events::{ConsumerLag, Events};
use crate::kafka::KafkaConnection;
use crate::progress::{InFlight, PartitionCheckpoint, Rebalance, SourcePosition};

/// Settings of the source.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub connection: KafkaConnection,
    pub topic: String,
    pub group: String,
    pub bounded: bool,
    pub end_linger: Duration,
    /// Where the checkpoints stored with the data are (none: start at the beginning).
    pub store: Option<StateStore>,
    /// Partitions without a checkpoint start at this time (ms since the epoch).
    pub start_at_ms: Option<i64>,
}

/// What the rebalance callback and the fetch loop share.
#[derive(Default)]
struct Shared {
    /// The offset each partition was assigned at (what a bounded run starts from).
    assigned: HashMap<i32, i64>,
    /// The next offset per partition after what was fetched.
    next: HashMap<i32, i64>,
    /// Partitions whose state the engine holds.
    held: HashSet<i32>,
    /// Eager protocol: revoked, waiting to learn whether the next assignment keeps them.
    revoking: HashSet<i32>,
    /// For the pipeline: what changed since it last asked.
    changes: Rebalance,
    /// For the fetch loop: partitions whose fetched messages must be dropped.
    dropped: Vec<i32>,
    /// Partitions started at a stored offset whose first message has not come yet.
    resuming: HashMap<i32, i64>,
    /// The state store refused for a reason waiting cannot fix: the source stops.
    failure: Option<DbError>,
}

/// The consumer's callbacks: seeks assigned partitions to their stored checkpoints,
/// lets partitions go only once what was handed out for them is stored, and feeds the
/// lag gauge from librdkafka's statistics.
struct ConsumerEvents {
    store: Option<StateStore>,
    start_at_ms: Option<i64>,
    shared: Arc<Mutex<Shared>>,
    in_flight: Arc<InFlight>,
    events: Events,
}

/// How long a revoke waits for the sink (a database outage can hold it up; past this
/// the partitions go anyway, and the new owner's rows overwrite any stale ones later).
const REVOKE_WAIT: Duration = Duration::from_secs(300);

impl ConsumerEvents {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every flush handed to the sink is stored. The callback runs inside
    /// the consumer's poll on a runtime worker: on the multi-threaded runtime the
    /// worker's other tasks (the sink's among them) move to another thread meanwhile.
    fn wait_for_sink(&self) {
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        let drained = match flavor {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.in_flight.wait_drained(REVOKE_WAIT))
            }
            Ok(_) => self.in_flight.wait_drained(Duration::ZERO),
            Err(_) => self.in_flight.wait_drained(REVOKE_WAIT),
        };
        if !drained {
            warn!("partitions revoked before every flush was stored");
        }
    }

    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        cooperative: bool,
    ) {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let mut shared = self.shared();
        let gained: Vec<(String, i32)> = parts
            .iter()
            .filter(|(_, p)| !shared.held.contains(p) && !shared.revoking.contains(p))
            .cloned()
            .collect();
        let stored = match (&self.store, gained.is_empty()) {
            (Some(store), false) => match load_checkpoints(store, &gained) {
                Ok(stored) => stored,
                Err(e) => {
                    // Nothing can start without its checkpoint: the source stops
                    // with the error at its next fetch, the partitions unassigned.
                    warn!(error = %chain(&e), "cannot read the stored checkpoints");
                    shared.failure = Some(e);
                    return;
                }
            },
            _ => HashMap::new(),
        };
        let by_time = match self.start_at_ms {
            Some(ms) => {
                let fresh: Vec<(String, i32)> = gained
                    .iter()
                    .filter(|k| !stored.contains_key(*k))
                    .cloned()
                    .collect();
                offsets_for_time(consumer, &fresh, ms)
            }
            None => HashMap::new(),
        };
        for (topic, partition) in &parts {
            let start = if shared.revoking.remove(partition) || shared.held.contains(partition) {
                // Kept across an eager rebalance: the engine has its state; go on.
                let next = shared.next.get(partition).copied();
                next.or_else(|| shared.assigned.get(partition).copied())
            } else {
                let c = stored.get(&(topic.clone(), *partition)).cloned();
                let start = c
                    .as_ref()
                    .map(|c| c.next_offset)
                    .or_else(|| by_time.get(partition).copied());
                match c {
                    Some(c) => shared.changes.restored.push(c),
                    None => shared.changes.started.push(*partition),
                }
                shared.next.remove(partition);
                start
            };
            let offset = start.map_or(Offset::Beginning, Offset::Offset);
            if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                warn!(topic, partition, error = %e, "cannot set the start offset");
            }
            shared.assigned.insert(*partition, start.unwrap_or(0));
            if let Some(o) = start {
                shared.resuming.insert(*partition, o);
            }
            shared.held.insert(*partition);
        }
        // Eager protocol: what was revoked and not given back is lost.
        let lost: Vec<i32> = shared.revoking.drain().collect();
        self.lose(&mut shared, &lost);
        drop(shared);
        info!(partitions = ?parts, gained = gained.len(), checkpoints = stored.len(), "partitions assigned");
        let r = if cooperative {
            consumer.incremental_assign(tpl)
        } else {
            consumer.assign(tpl)
        };
        if let Err(e) = r {
            warn!(error = %e, "assigning partitions failed");
        }
    }

    fn lose(&self, shared: &mut Shared, lost: &[i32]) {
        for p in lost {
            shared.held.remove(p);
            shared.next.remove(p);
            shared.assigned.remove(p);
            shared.changes.started.retain(|s| s != p);
            shared.changes.lost.push(*p);
            shared.dropped.push(*p);
        }
        if !lost.is_empty() {
            info!(partitions = ?lost, "partitions lost to another member; their state goes");
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList, cooperative: bool) {
        // Everything computed for these partitions reaches the database before another
        // member can be assigned them (it is assigned only after this callback returns).
        self.wait_for_sink();
        let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        {
            let mut shared = self.shared();
            if cooperative {
                self.lose(&mut shared, &parts);
            } else {
                shared.revoking.extend(parts.iter().copied());
            }
        }
        info!(partitions = ?parts, "partitions revoked");
        let r = if cooperative {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = r {
            warn!(error = %e, "unassigning partitions failed");
        }
    }
}

impl ClientContext for ConsumerEvents {
    /// librdkafka's statistics (every `statistics.interval.ms`): the lag gauge per
    /// partition, high watermark minus committed offset (commits follow stored
    /// flushes); before a partition's first commit, high watermark minus the position
    /// read.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (id, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if *id < 0 {
                    continue;
                }
                if !p.desired {
                    self.events.emit(ConsumerLag {
                        topic,
                        partition: *id,
                        lag: None,
                    });
                    continue;
                }
                let behind = if p.consumer_lag >= 0 {
                    Some(p.consumer_lag)
                } else if p.hi_offset >= 0 && p.app_offset >= 0 {
                    Some((p.hi_offset - p.app_offset).max(0))
                } else {
                    None
                };
                if behind.is_some() {
                    self.events.emit(ConsumerLag {
                        topic,
                        partition: *id,
                        lag: behind,
                    });
                }
            }
        }
    }
}

impl ConsumerContext for ConsumerEvents {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assign(consumer, tpl, cooperative)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl, cooperative)
            }
            other => {
                warn!(error = ?other, "rebalance failed; dropping the assignment");
                let mut shared = self.shared();
                let held: Vec<i32> = shared.held.iter().copied().collect();
                self.lose(&mut shared, &held);
                drop(shared);
                let _ = consumer.unassign();
            }
        }
    }
}

/// Reads the stored checkpoints of some partitions, waiting out an unavailable
/// database. The rebalance callback is synchronous and runs inside the consumer's poll
/// on a worker of the multi-threaded runtime (`KafkaSource::open` insists on one): the
/// worker hands its other tasks to the rest of the pool while it waits.
fn load_checkpoints(
    store: &StateStore,
    parts: &[PartitionKey],
) -> Result<HashMap<PartitionKey, PartitionCheckpoint>, DbError> {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(store.load_retrying(parts))
    })
}

pub struct KafkaSource {
    consumer: StreamConsumer<ConsumerEvents>,
    opts: KafkaOptions,
    shared: Arc<Mutex<Shared>>,
    in_flight: Arc<InFlight>,
    /// Bounded runs: the end offset of every partition, taken at start.
    ends: Option<HashMap<i32, i64>>,
    last_message: Instant,
    /// Kafka timestamps of the last batch's messages (ms since the epoch).
    arrivals_ms: Vec<i64>,
    /// Bounded runs: when progress was last logged.
    last_progress: Instant,
    started: Instant,
}

/// How often a bounded run logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How long a batch may keep filling after its first message.
const BATCH_LINGER: Duration = Duration::from_millis(100);
/// With nothing to read, a fetch returns an empty batch after this long, so that the
/// pipeline sees wall time pass (well under any sensible `idle_timeout`).
const IDLE_TICK: Duration = Duration::from_secs(1);

impl KafkaSource {
    pub fn open(opts: KafkaOptions, events: Events) -> Result<Self, SourceError> {
        // The rebalance callback blocks its worker while it reads checkpoints and waits
        // for the sink (see `load_checkpoints`): only a multi-threaded runtime goes on.
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        if !matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
            return Err(SourceError::Settings {
                key: "kind",
                expected: "the Kafka source to run on tokio's multi-threaded runtime".into(),
            });
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let in_flight = Arc::new(InFlight::default());
        let consumer: StreamConsumer<ConsumerEvents> = opts.connection.consumer(
            &opts.group,
            ConsumerEvents {
                store: opts.store.clone(),
                start_at_ms: opts.start_at_ms,
                shared: shared.clone(),
                in_flight: in_flight.clone(),
                events,
            },
        )?;
        consumer
            .subscribe(&[&opts.topic])
            .map_err(|source| KafkaError::Topic {
                topic: opts.topic.clone(),
                class: ErrorClass::Configuration,
                source,
            })?;
        let ends = if opts.bounded {
            Some(end_offsets(&consumer, &opts.topic)?)
        } else {
            None
        };
        Ok(KafkaSource {
            consumer,
            opts,
            shared,
            in_flight,
            ends,
            last_message: Instant::now(),
            arrivals_ms: Vec::new(),
            last_progress: Instant::now(),
            started: Instant::now(),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "kafka {} topic {} group {}{}",
            self.opts.connection.brokers,
            self.opts.topic,
            self.opts.group,
            if self.ends.is_some() {
                " (bounded)"
            } else {
                ""
            }
        )
    }

    pub fn is_bounded(&self) -> bool {
        self.ends.is_some()
    }

    /// Whether partitions resume from checkpoints stored with the data.
    pub fn resumes(&self) -> bool {
        self.opts.store.is_some()
    }

    /// Flushes handed to the sink and not yet stored (a revoke waits for them).
    pub fn in_flight(&self) -> Arc<InFlight> {
        self.in_flight.clone()
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kafka timestamps of the last batch's messages (ms since the epoch).
    pub fn take_arrivals(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.arrivals_ms)
    }

    /// What rebalances changed since the last call.
    pub fn take_rebalance(&self) -> Rebalance {
        std::mem::take(&mut self.shared().changes)
    }

    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Message>>, SourceError> {
        let mut out: Vec<Message> = Vec::new();
        let mut first: Option<Instant> = None;
        let called = Instant::now();
        self.arrivals_ms.clear();
        loop {
            let wait = match first {
                None => Duration::from_millis(200),
                Some(t) => BATCH_LINGER.saturating_sub(t.elapsed()),
            };
            let received = tokio::time::timeout(wait, self.consumer.recv()).await;
            // A rebalance runs inside recv: drop what was fetched for lost partitions,
            // and hand nothing out while an eager rebalance has yet to say what stays.
            let revoking = {
                let mut shared = self.shared();
                if let Some(e) = shared.failure.take() {
                    return Err(e.into());
                }
                let dropped = std::mem::take(&mut shared.dropped);
                if !dropped.is_empty() {
                    out.retain(|m| !dropped.contains(&m.partition));
                }
                !shared.revoking.is_empty()
            };
            match received {
                Ok(Ok(m)) => {
                    let (partition, offset) = (m.partition(), m.offset());
                    let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                    if !shared.held.contains(&partition) {
                        continue;
                    }
                    if let Some(from) = shared.resuming.remove(&partition)
                        && offset > from
                    {
                        // Kafka returns the batch holding the offset asked for; a broker
                        // that returns the next one (Tansu 0.6) loses records here.
                        warn!(
                            partition,
                            from,
                            first = offset,
                            "the broker skipped records after a seek or a pause; they are \
                             not processed"
                        );
                    }
                    first.get_or_insert_with(Instant::now);
                    if let Some(ts) = m.timestamp().to_millis() {
                        self.arrivals_ms.push(ts);
                    }
                    out.push(Message {
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        topic: m.topic().to_owned(),
                        partition,
                        offset,
                    });
                    let n = shared.next.entry(partition).or_insert(0);
                    *n = (*n).max(offset + 1);
                    if out.len() >= max && !revoking {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "Kafka consumer error; going on");
                    if !out.is_empty() && !revoking {
                        break;
                    }
                    // A broker that is down answers every poll at once: do not spin.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) if revoking => {}
                Err(_) if !out.is_empty() => break,
                Err(_) => {
                    if self.reached_end() {
                        self.log_progress();
                        return Ok(None);
                    }
                    if called.elapsed() >= IDLE_TICK {
                        // Nothing to read: an empty batch lets the pipeline's clock
                        // move (idle watermarks, DESIGN 3).
                        return Ok(Some(out));
                    }
                }
            }
        }
        self.last_message = Instant::now();
        if self.last_progress.elapsed() >= PROGRESS_EVERY {
            self.log_progress();
        }
        Ok(Some(out))
    }

    /// Bounded runs: how far the assigned partitions are towards their end offsets,
    /// the rate, and the time left at that rate (a progress line for logs).
    fn log_progress(&mut self) {
        self.last_progress = Instant::now();
        let Some(ends) = &self.ends else {
            return;
        };
        let shared = self.shared();
        let (mut done, mut total) = (0i64, 0i64);
        for p in &shared.held {
            let start = shared.assigned.get(p).copied().unwrap_or(0);
            let end = ends.get(p).copied().unwrap_or(0).max(start);
            let at = shared
                .next
                .get(p)
                .copied()
                .unwrap_or(start)
                .clamp(start, end);
            done += at - start;
            total += end - start;
        }
        drop(shared);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let left_s = if rate > 0.0 {
            ((total - done) as f64 / rate).round() as u64
        } else {
            0
        };
        info!(
            done,
            total,
            percent = format!("{:.1}", 100.0 * done as f64 / total.max(1) as f64),
            msg_per_s = rate.round() as u64,
            left_s,
            "backfill progress"
        );
    }

    /// Stops fetching every assigned partition (the sink is behind); `resume` undoes it.
    pub fn pause(&self) {
        self.on_assignment("pausing", |c, tpl| c.pause(tpl));
    }

    pub fn resume(&self) {
        // librdkafka drops what it had fetched for a paused partition and fetches again
        // from the position handed out: watch that the broker does not skip records.
        {
            let mut shared = self.shared();
            let next: Vec<(i32, i64)> = shared.next.iter().map(|(p, o)| (*p, *o)).collect();
            for (p, o) in next {
                shared.resuming.entry(p).or_insert(o);
            }
        }
        self.on_assignment("resuming", |c, tpl| c.resume(tpl));
    }

    /// Applies `action` to every assigned partition; a failure is logged, not fatal.
    fn on_assignment(
        &self,
        what: &str,
        action: impl Fn(&StreamConsumer<ConsumerEvents>, &TopicPartitionList) -> KafkaResult<()>,
    ) {
        match self.consumer.assignment() {
            Ok(tpl) if tpl.count() > 0 => {
                if let Err(e) = action(&self.consumer, &tpl) {
                    warn!(error = %e, "{what} the partitions failed");
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "reading the assignment for {what} failed"),
        }
    }

    /// Bounded runs: every assigned partition is at its end offset and the topic has
    /// been quiet for `end_linger`.
    fn reached_end(&self) -> bool {
        let Some(ends) = &self.ends else {
            return false;
        };
        if self.last_message.elapsed() < self.opts.end_linger {
            return false;
        }
        let Ok(assignment) = self.consumer.assignment() else {
            return false;
        };
        if assignment.count() == 0 {
            // Nothing to read at all ends a bounded run; otherwise wait for partitions.
            return ends.values().all(|&e| e == 0);
        }
        let shared = self.shared();
        assignment.elements().iter().all(|e| {
            let p = e.partition();
            let at = shared
                .next
                .get(&p)
                .or_else(|| shared.assigned.get(&p))
                .copied()
                .unwrap_or(0);
            at >= ends.get(&p).copied().unwrap_or(0)
        })
    }

    /// The partitions assigned to this member now.
    pub fn partitions(&self) -> Vec<i32> {
        self.consumer
            .assignment()
            .map(|a| a.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    }

    /// After a flush is stored: Kafka's committed offsets follow, for lag monitoring.
    pub fn commit(&self, positions: &[SourcePosition]) {
        let mut tpl = TopicPartitionList::new();
        for p in positions {
            if let Err(e) =
                tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
            {
                warn!(error = %e, "cannot commit an offset");
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            warn!(error = %e, "committing offsets to Kafka failed (lag monitoring only)");
        }
    }
}

/// The first offset at or after `ms` of each partition (the end when none is), by
/// Kafka's offsets for times; partitions it cannot resolve start at the beginning.
fn offsets_for_time(
    consumer: &BaseConsumer<ConsumerEvents>,
    parts: &[(String, i32)],
    ms: i64,
) -> HashMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in parts {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(ms)) {
            warn!(error = %e, "cannot ask for an offset by time");
        }
    }
    if tpl.count() == 0 {
        return HashMap::new();
    }
    let resolved = match consumer.offsets_for_times(tpl, Duration::from_secs(10)) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "offsets for times failed; those partitions start at the beginning");
            return HashMap::new();
        }
    };
    let mut out = HashMap::new();
    for e in resolved.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Some(o),
            // Nothing at or after the time: start at the end.
            Offset::End => consumer
                .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
                .ok()
                .map(|(_, high)| high),
            _ => None,
        };
        if let Some(o) = offset {
            out.insert(e.partition(), o);
        }
    }
    info!(at_ms = ms, partitions = ?out, "start offsets by time");
    out
}

/// The high watermark of every partition of `topic`.
fn end_offsets(
    consumer: &StreamConsumer<ConsumerEvents>,
    topic: &str,
) -> Result<HashMap<i32, i64>, KafkaError> {
    let timeout = Duration::from_secs(10);
    let unreadable = |source| KafkaError::Topic {
        topic: topic.to_owned(),
        class: ErrorClass::Retriable,
        source,
    };
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(unreadable)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(KafkaError::MissingTopic(topic.to_owned()));
    };
    if let Some(e) = t.error() {
        return Err(unreadable(rdkafka::error::KafkaError::MetadataFetch(
            e.into(),
        )));
    }
    let mut ends = HashMap::new();
    for p in t.partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .map_err(unreadable)?;
        ends.insert(p.id(), high);
    }
    Ok(ends)
}
