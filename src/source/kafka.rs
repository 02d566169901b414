//! The Kafka source (DESIGN 4): one member of a consumer group. Where the sink stores
//! offsets with the data (TimescaleDB), those are the truth: on assignment, every
//! partition starts at the offset stored for it, read from the database inside the
//! rebalance callback (the beginning when none is stored). Kafka's own committed
//! offsets follow each stored flush, for lag monitoring only.
//!
//! A bounded run (a backfill) takes the end offsets at start and stops once every
//! assigned partition has reached them and no message has come for `end_linger`:
//! a broker's high watermark can lag behind what it holds (Tansu after multi-record
//! batches), so it is not trusted alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::dump::Message;
use crate::sink::SourcePosition;

/// Where the offsets stored with the data live.
#[derive(Debug, Clone)]
pub struct OffsetStore {
    pub url: String,
    pub group: String,
}

/// Settings of the source.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub bounded: bool,
    pub end_linger: Duration,
    pub properties: Vec<(String, String)>,
    pub store: Option<OffsetStore>,
}

/// The consumer's callbacks: seeks assigned partitions to the stored offsets.
struct SeekContext {
    store: Option<OffsetStore>,
    /// The offset each partition was assigned at (what a bounded run starts from).
    assigned: Arc<Mutex<HashMap<i32, i64>>>,
}

impl ClientContext for SeekContext {}

impl ConsumerContext for SeekContext {
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
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                if let Some(store) = &self.store {
                    let stored = load_offsets_retrying(store);
                    let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
                    for (topic, partition) in &parts {
                        let next = stored.get(&(topic.clone(), *partition)).copied();
                        let offset = next.map_or(Offset::Beginning, Offset::Offset);
                        if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                            warn!(topic, partition, error = %e, "cannot set the start offset");
                        }
                        assigned.insert(*partition, next.unwrap_or(0));
                    }
                }
                info!(partitions = ?parts, "partitions assigned");
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    warn!(error = %e, "assigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(partitions = tpl.count(), "partitions revoked");
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    warn!(error = %e, "unassigning partitions failed");
                }
            }
            other => {
                warn!(error = ?other, "rebalance failed; dropping the assignment");
                let _ = consumer.unassign();
            }
        }
    }
}

/// Reads the stored offsets of a consumer group, on a thread of its own: the rebalance
/// callback is synchronous and runs inside the consumer's poll.
fn load_offsets(store: &OffsetStore) -> Result<HashMap<(String, i32), i64>> {
    let store = store.clone();
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = crate::db::connect(&store.url).await?;
                let rows = client
                    .query(
                        "SELECT topic, partition, next_offset FROM gpu_health.consumed_offsets
                          WHERE consumer_group = $1",
                        &[&store.group],
                    )
                    .await
                    .context("reading the stored offsets")?;
                Ok(rows
                    .iter()
                    .map(|r| ((r.get::<_, String>(0), r.get::<_, i32>(1)), r.get(2)))
                    .collect())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the offset reader panicked"))?
    })
}

/// Without the stored offsets no partition can start: retry until the database answers.
fn load_offsets_retrying(store: &OffsetStore) -> HashMap<(String, i32), i64> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match load_offsets(store) {
            Ok(m) => return m,
            Err(e) => {
                warn!(error = %format!("{e:#}"), backoff_ms = backoff.as_millis() as u64,
                      "cannot read the stored offsets; partitions wait");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

pub struct KafkaSource {
    consumer: StreamConsumer<SeekContext>,
    opts: KafkaOptions,
    assigned: Arc<Mutex<HashMap<i32, i64>>>,
    /// Bounded runs: the end offset of every partition, taken at start.
    ends: Option<HashMap<i32, i64>>,
    /// The next offset per partition after what was handed out.
    next: HashMap<i32, i64>,
    last_message: Instant,
}

/// How long a batch may keep filling after its first message.
const BATCH_LINGER: Duration = Duration::from_millis(100);

impl KafkaSource {
    pub fn open(opts: KafkaOptions) -> Result<Self> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &opts.brokers)
            .set("group.id", &opts.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // The source is not polled while the sink waits for the database; an outage
            // must not cost the group membership.
            .set("max.poll.interval.ms", "3600000")
            // Tansu answers a fetch only after the full wait even when it has data: at
            // librdkafka's 500 ms the fixture took 19 s, at 10 ms 4.8 s (2 s of it the
            // end linger). A real broker answers at once; 10 ms costs it idle polls.
            .set("fetch.wait.max.ms", "10");
        for (k, v) in &opts.properties {
            cfg.set(k, v);
        }
        let assigned = Arc::new(Mutex::new(HashMap::new()));
        let consumer: StreamConsumer<SeekContext> = cfg
            .create_with_context(SeekContext {
                store: opts.store.clone(),
                assigned: assigned.clone(),
            })
            .with_context(|| format!("creating a Kafka consumer for {}", opts.brokers))?;
        consumer
            .subscribe(&[&opts.topic])
            .with_context(|| format!("subscribing to {}", opts.topic))?;
        let ends = if opts.bounded {
            Some(end_offsets(&consumer, &opts.topic)?)
        } else {
            None
        };
        Ok(KafkaSource {
            consumer,
            opts,
            assigned,
            ends,
            next: HashMap::new(),
            last_message: Instant::now(),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "kafka {} topic {} group {}{}",
            self.opts.brokers,
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

    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Message>>> {
        let mut out: Vec<Message> = Vec::new();
        let mut first: Option<Instant> = None;
        loop {
            let wait = match first {
                None => Duration::from_millis(200),
                Some(t) => BATCH_LINGER.saturating_sub(t.elapsed()),
            };
            match tokio::time::timeout(wait, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    first.get_or_insert_with(Instant::now);
                    let (partition, offset) = (m.partition(), m.offset());
                    out.push(Message {
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        topic: m.topic().to_owned(),
                        partition,
                        offset,
                    });
                    let n = self.next.entry(partition).or_insert(0);
                    *n = (*n).max(offset + 1);
                    if out.len() >= max {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "Kafka consumer error; going on");
                    if !out.is_empty() {
                        break;
                    }
                    // A broker that is down answers every poll at once: do not spin.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) if !out.is_empty() => break,
                Err(_) => {
                    if self.reached_end() {
                        return Ok(None);
                    }
                }
            }
        }
        self.last_message = Instant::now();
        Ok(Some(out))
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
        let assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(assignment) = self.consumer.assignment() else {
            return false;
        };
        if assignment.count() == 0 {
            // Nothing to read at all ends a bounded run; otherwise wait for partitions.
            return ends.values().all(|&e| e == 0);
        }
        assignment.elements().iter().all(|e| {
            let p = e.partition();
            let at = self
                .next
                .get(&p)
                .or_else(|| assigned.get(&p))
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

/// The high watermark of every partition of `topic`.
fn end_offsets(consumer: &StreamConsumer<SeekContext>, topic: &str) -> Result<HashMap<i32, i64>> {
    let timeout = Duration::from_secs(10);
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading the metadata of topic {topic}"))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} does not exist");
    };
    if let Some(e) = t.error() {
        bail!("topic {topic}: {e:?}");
    }
    let mut ends = HashMap::new();
    for p in t.partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .with_context(|| format!("reading the end offset of {topic}/{}", p.id()))?;
        ends.insert(p.id(), high);
    }
    Ok(ends)
}
