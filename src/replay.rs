//! `gpu-health replay`: produces a topic dump into Kafka, each message with its key
//! and into the partition the dump recorded, so that offsets, partitions and keys
//! come out as in the original topic. Idempotent producer; as fast as possible or at
//! a given rate; the topic is created when missing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rdkafka::producer::{FutureRecord, Producer};

use crate::kafka::{KafkaConnection, Role};
use crate::source::FileSource;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub dump: String,
    pub brokers: String,
    pub topic: String,
    /// Partitions of the topic when it has to be created.
    pub partitions: i32,
    /// Messages per second; `None` for as fast as possible.
    pub rate: Option<f64>,
    /// At most this many records per produced batch (`batch.num.messages`); `None`
    /// for librdkafka's default. 1 works around brokers that cannot fetch from inside
    /// a batch (Tansu 0.6 returns the next batch instead, skipping the rest of it).
    pub batch_records: Option<u32>,
    /// librdkafka properties for the producer and the admin client (TLS, SASL).
    pub properties: Vec<(String, String)>,
}

/// Deliveries awaited at once (librdkafka batches underneath).
const IN_FLIGHT: usize = 20_000;

pub async fn replay(opts: &ReplayOptions) -> Result<u64> {
    let kafka = KafkaConnection::new(&opts.brokers, opts.properties.iter().cloned());
    kafka
        .ensure_topic(&opts.topic, opts.partitions, None)
        .await?;
    let producer = kafka.producer(Role::ReplayProducer {
        batch_records: opts.batch_records,
    })?;
    let mut source = FileSource::open(&opts.dump, &opts.topic)?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut pending = FuturesUnordered::new();
    while let Some(batch) = source.next_batch(8192)? {
        for m in batch {
            if m.partition >= opts.partitions {
                bail!(
                    "the dump puts a message in partition {} but the topic has {}",
                    m.partition,
                    opts.partitions
                );
            }
            if let Some(rate) = opts.rate {
                let due = Duration::from_secs_f64(sent as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let producer = &producer;
            let topic = opts.topic.as_str();
            pending.push(async move {
                let mut record = FutureRecord::to(topic)
                    .payload(&m.value)
                    .partition(m.partition);
                if let Some(k) = &m.key {
                    record = record.key(k);
                }
                producer
                    .send(record, Duration::from_secs(60))
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("delivering a message: {e}"))
            });
            sent += 1;
            while pending.len() >= IN_FLIGHT {
                if let Some(r) = pending.next().await {
                    r?;
                }
            }
        }
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the producer")?;
    Ok(sent)
}
