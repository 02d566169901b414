//! Kafka output topics (DESIGN 2.3, 4): every emitted rollup (re-emissions after late
//! data included, like the database's upserts) as a flat JSON row with the table's
//! column names, keyed by GPU UUID, on `gpu-metrics-1min` and `gpu-metrics-15min`; and
//! every dead letter on `gpu-metrics-dlq` with its original key and bytes and the
//! headers `error.reason`, `error.detail`, `source.topic`, `source.partition`,
//! `source.offset`.
//!
//! At least once, with an idempotent producer: the pipeline awaits the broker's
//! acknowledgement of a flush's messages before it stores the flush, so a crash between
//! the two sends them again and never loses them. A broker that is unavailable is
//! waited out like a database outage: the unacknowledged messages are sent again with
//! backoff while the source is paused. No message is ever over the brokers' limit
//! (`max_message_bytes`): a longer one goes out truncated, with the headers
//! `error.truncated`, `original.size` and `original.sha256`.

use std::time::Duration;

use anyhow::{Result, anyhow};
use datafusion::arrow::array::{
    Array, BinaryArray, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use futures_util::future::join_all;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::FlushSet;
use crate::config::TopicsSection;
use crate::error::{ErrorClass, KafkaError, chain};
use crate::internal_events::{Events, TopicRetried};
use crate::kafka::{KafkaConnection, Role};

/// One message to produce: topic, value, key, headers.
struct Outgoing {
    topic: String,
    value: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
}

/// Partitions of an output topic created by the processor.
const PARTITIONS: i32 = 4;

pub struct TopicSink {
    producer: FutureProducer,
    cfg: TopicsSection,
}

impl TopicSink {
    /// Creates the output topics where missing and the producer, both with the
    /// section's properties (TLS, SASL).
    pub async fn connect(cfg: &TopicsSection) -> Result<Self, KafkaError> {
        let kafka = KafkaConnection::new(
            &cfg.brokers,
            cfg.properties.iter().map(|(k, v)| (k.clone(), v.clone())),
        );
        for t in [&cfg.rollup_1m, &cfg.rollup_15m, &cfg.dead_letters] {
            kafka
                .ensure_topic(t, PARTITIONS, cfg.replication_factor)
                .await?;
        }
        let producer = kafka.producer(Role::TopicProducer)?;
        Ok(TopicSink {
            producer,
            cfg: cfg.clone(),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "kafka {} topics {}, {}, {}",
            self.cfg.brokers, self.cfg.rollup_1m, self.cfg.rollup_15m, self.cfg.dead_letters
        )
    }

    /// Produces a flush's rollups and dead letters and waits until the broker has
    /// acknowledged every one, waiting out an unavailable broker.
    pub async fn write(&self, set: &FlushSet, events: &Events) -> Result<u64, KafkaError> {
        let mut records: Vec<Outgoing> = Vec::new();
        for (topic, batches) in [
            (&self.cfg.rollup_1m, &set.updates_1m),
            (&self.cfg.rollup_15m, &set.updates_15m),
        ] {
            let encoding = |source: anyhow::Error| KafkaError::Encode {
                topic: topic.clone(),
                source: source.into(),
            };
            for batch in batches {
                for row in rows_as_json(batch).map_err(encoding)? {
                    let key = row
                        .get("gpu_uuid")
                        .and_then(Value::as_str)
                        .map(|s| s.as_bytes().to_vec());
                    let value = serde_json::to_vec(&row).map_err(|e| encoding(e.into()))?;
                    records.push(Outgoing {
                        topic: topic.clone(),
                        value,
                        key,
                        headers: None,
                    });
                }
            }
        }
        for batch in &set.dead_letters {
            records.extend(dead_letter_records(batch, &self.cfg.dead_letters).map_err(
                |source| KafkaError::Encode {
                    topic: self.cfg.dead_letters.clone(),
                    source: source.into(),
                },
            )?);
        }
        for o in &mut records {
            fit(o, self.cfg.max_message_bytes);
        }
        let mut pending: Vec<&Outgoing> = records.iter().collect();
        let mut backoff = Duration::from_millis(100);
        loop {
            let results = join_all(pending.iter().map(|o| self.send(o))).await;
            let mut failed = Vec::new();
            let mut last = None;
            for (o, r) in pending.into_iter().zip(results) {
                match r {
                    Ok(()) => {}
                    Err(e) if e.class() == ErrorClass::Retriable => {
                        failed.push(o);
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(e) = last else { break };
            events.emit(TopicRetried {
                error: &chain(&e),
                backoff,
            });
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            pending = failed;
        }
        Ok(records.len() as u64)
    }

    /// Produces one message and waits for its acknowledgement (librdkafka retries
    /// within `message.timeout.ms`, 5 min by default).
    async fn send(&self, o: &Outgoing) -> Result<(), KafkaError> {
        let mut r = FutureRecord::<[u8], [u8]>::to(&o.topic).payload(o.value.as_slice());
        if let Some(k) = &o.key {
            r = r.key(k.as_slice());
        }
        if let Some(h) = &o.headers {
            r = r.headers(h.clone());
        }
        self.producer
            .send(r, Duration::from_secs(300))
            .await
            .map(|_| ())
            .map_err(|(source, _)| KafkaError::Produce {
                topic: o.topic.clone(),
                class: produce_class(&source),
                source,
            })
    }
}

/// Longest wait between two tries of an unavailable broker.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Room left in a message for its key and headers beside the value.
const HEADER_ROOM: usize = 4096;

/// Cuts a message that would be over `max` bytes: the value keeps its first bytes,
/// and headers say it was cut, how long it was and its SHA-256.
fn fit(o: &mut Outgoing, max: usize) {
    let key = o.key.as_ref().map_or(0, Vec::len);
    let room = max.saturating_sub(key + HEADER_ROOM);
    if o.value.len() <= room {
        return;
    }
    let digest = Sha256::digest(&o.value);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let size = o.value.len().to_string();
    o.value.truncate(room);
    let headers = o.headers.take().unwrap_or_default();
    o.headers = Some(
        headers
            .insert(Header {
                key: "error.truncated",
                value: Some("true"),
            })
            .insert(Header {
                key: "original.size",
                value: Some(&size),
            })
            .insert(Header {
                key: "original.sha256",
                value: Some(&hex),
            }),
    );
}

/// The class of a failed delivery: refused for the set-up (authorisation, a bad
/// setting), for the message (size), or waited out (everything else: timeouts, a
/// broker down, leaders moving).
fn produce_class(e: &rdkafka::error::KafkaError) -> ErrorClass {
    use RDKafkaErrorCode::*;
    match e.rdkafka_error_code() {
        Some(
            TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | SaslAuthenticationFailed
            | Authentication
            | InvalidConfig
            | InvalidArgument,
        ) => ErrorClass::Configuration,
        Some(MessageSizeTooLarge | InvalidMessageSize | InvalidRecord) => ErrorClass::Data,
        _ => ErrorClass::Retriable,
    }
}

/// The DLQ records of a dead-letter batch: original key and bytes, reason headers.
fn dead_letter_records(batch: &RecordBatch, topic: &str) -> Result<Vec<Outgoing>> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| anyhow!("dead-letter batch without {name}"))
    };
    let reason = downcast::<StringArray>(col("reason")?)?;
    let detail = downcast::<StringArray>(col("detail")?)?;
    let src_topic = downcast::<StringArray>(col("topic")?)?;
    let partition = downcast::<Int32Array>(col("partition")?)?;
    let offset = downcast::<Int64Array>(col("offset")?)?;
    let key = downcast::<BinaryArray>(col("key")?)?;
    let value = downcast::<BinaryArray>(col("value")?)?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let partition = partition.value(i).to_string();
            let offset = offset.value(i).to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "error.reason",
                    value: Some(reason.value(i)),
                })
                .insert(Header {
                    key: "error.detail",
                    value: Some(detail.value(i)),
                })
                .insert(Header {
                    key: "source.topic",
                    value: Some(src_topic.value(i)),
                })
                .insert(Header {
                    key: "source.partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "source.offset",
                    value: Some(&offset),
                });
            Outgoing {
                topic: topic.to_owned(),
                value: value.value(i).to_vec(),
                key: key.is_valid(i).then(|| key.value(i).to_vec()),
                headers: Some(headers),
            }
        })
        .collect())
}

fn downcast<T: 'static>(a: &dyn Array) -> Result<&T> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| anyhow!("unexpected column type {}", a.data_type()))
}

/// Each row as a JSON object with the batch's column names: timestamps as RFC 3339
/// (UTC, microseconds), NULL as null.
pub fn rows_as_json(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>> {
    let schema = batch.schema();
    let mut rows = vec![Map::new(); batch.num_rows()];
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        let put = |rows: &mut Vec<Map<String, Value>>, f: &dyn Fn(usize) -> Value| {
            for (i, row) in rows.iter_mut().enumerate() {
                let v = if column.is_null(i) { Value::Null } else { f(i) };
                row.insert(name.clone(), v);
            }
        };
        match column.data_type() {
            DataType::Utf8 => {
                let a = downcast::<StringArray>(column)?;
                put(&mut rows, &|i| Value::from(a.value(i)));
            }
            DataType::Float64 => {
                let a = downcast::<Float64Array>(column)?;
                put(&mut rows, &|i| Value::from(a.value(i)));
            }
            DataType::Int64 => {
                let a = downcast::<Int64Array>(column)?;
                put(&mut rows, &|i| Value::from(a.value(i)));
            }
            DataType::Int32 => {
                let a = downcast::<Int32Array>(column)?;
                put(&mut rows, &|i| Value::from(a.value(i)));
            }
            DataType::Boolean => {
                let a = downcast::<BooleanArray>(column)?;
                put(&mut rows, &|i| Value::from(a.value(i)));
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let a = downcast::<TimestampMicrosecondArray>(column)?;
                put(&mut rows, &|i| {
                    chrono::DateTime::from_timestamp_micros(a.value(i))
                        .map(|t| {
                            Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                        })
                        .unwrap_or(Value::Null)
                });
            }
            other => {
                return Err(anyhow!("column {name}: {other} has no JSON form here"));
            }
        }
    }
    Ok(rows)
}
