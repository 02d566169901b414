//! Sources: where messages come from. A source hands out micro-batches of messages
//! in partition order; `None` means a bounded input has ended.

pub mod file;
pub mod kafka;

use std::sync::Arc;

use crate::config::SourceConfig;
use crate::db::state::StateStore;
use crate::dump::Message;
use crate::error::SourceError;
use crate::internal_events::Events;
use crate::kafka::KafkaConnection;
use crate::progress::{InFlight, Rebalance, SourcePosition};

pub use file::FileSource;
pub use kafka::{KafkaOptions, KafkaSource};

/// The configured source. An enum rather than a trait object: sources differ in
/// how they end and commit, and the pipeline matches on that.
pub enum Source {
    File(FileSource),
    Kafka(Box<KafkaSource>),
}

impl Source {
    /// `store`: where the sink keeps offsets with the data, if it does (Kafka starts
    /// its partitions there). `default_group`: the consumer group when none is set.
    pub fn from_config(
        cfg: &SourceConfig,
        store: Option<StateStore>,
        default_group: &str,
        events: &Events,
    ) -> Result<Self, SourceError> {
        match cfg {
            SourceConfig::File { path, topic } => Ok(Source::File(FileSource::open(path, topic)?)),
            SourceConfig::Kafka {
                brokers,
                topic,
                group,
                bounded,
                end_linger,
                properties,
                start_at,
            } => {
                let start_at_ms = start_at
                    .as_deref()
                    .map(|t| {
                        chrono::DateTime::parse_from_rfc3339(t)
                            .map(|d| d.timestamp_millis())
                            .map_err(|_| SourceError::Settings {
                                key: "start_at",
                                expected: format!("an RFC 3339 time, got {t:?}"),
                            })
                    })
                    .transpose()?;
                let group = group
                    .clone()
                    .or_else(|| store.as_ref().map(|s| s.group().to_owned()))
                    .unwrap_or_else(|| default_group.to_owned());
                let connection = KafkaConnection::new(
                    brokers,
                    properties.iter().map(|(k, v)| (k.clone(), v.clone())),
                );
                let opts = KafkaOptions {
                    connection,
                    topic: topic.clone(),
                    group,
                    bounded: *bounded,
                    end_linger: *end_linger,
                    start_at_ms,
                    store,
                };
                Ok(Source::Kafka(Box::new(KafkaSource::open(
                    opts,
                    events.clone(),
                )?)))
            }
        }
    }

    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Message>>, SourceError> {
        match self {
            Source::File(f) => f.next_batch(max),
            Source::Kafka(k) => k.next_batch(max).await,
        }
    }

    /// Whether the input is bounded (a replay that flushes every window at its end).
    pub fn is_bounded(&self) -> bool {
        match self {
            Source::File(_) => true,
            Source::Kafka(k) => k.is_bounded(),
        }
    }

    /// The partitions this source reads now, where it knows them before their data.
    pub fn partitions(&self) -> Vec<i32> {
        match self {
            Source::File(f) => f.partitions().to_vec(),
            Source::Kafka(k) => k.partitions(),
        }
    }

    /// Whether the source resumes from checkpoints stored with the data (so the
    /// pipeline should store them).
    pub fn resumes(&self) -> bool {
        match self {
            Source::File(_) => false,
            Source::Kafka(k) => k.resumes(),
        }
    }

    /// What consumer-group rebalances changed since the last call: partitions to
    /// restore, partitions to forget.
    pub fn take_rebalance(&self) -> Rebalance {
        match self {
            Source::File(_) => Rebalance::default(),
            Source::Kafka(k) => k.take_rebalance(),
        }
    }

    /// Stops fetching while the sink is behind (Kafka: pauses every assigned partition).
    pub fn pause(&self) {
        if let Source::Kafka(k) = self {
            k.pause();
        }
    }

    pub fn resume(&self) {
        if let Source::Kafka(k) = self {
            k.resume();
        }
    }

    /// Kafka timestamps (ms since the epoch) of the last batch's messages.
    pub fn take_arrivals(&mut self) -> Vec<i64> {
        match self {
            Source::File(_) => Vec::new(),
            Source::Kafka(k) => k.take_arrivals(),
        }
    }

    /// The count of flushes in the sink's hands that the source may wait on.
    pub fn in_flight(&self) -> Arc<InFlight> {
        match self {
            Source::File(_) => Arc::new(InFlight::default()),
            Source::Kafka(k) => k.in_flight(),
        }
    }

    /// Called once a flush with these positions is stored.
    pub fn stored(&self, positions: &[SourcePosition]) {
        match self {
            Source::File(_) => {}
            Source::Kafka(k) => k.commit(positions),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::File(f) => f.describe(),
            Source::Kafka(k) => k.describe(),
        }
    }
}
