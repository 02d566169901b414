//! Sinks: where the pipeline's outputs go. Each flush hands a sink one `FlushSet`;
//! upsert sinks (databases, topics) take every rollup emission, append-only sinks
//! (Parquet) take each rollup once, when it is final.

pub mod parquet;
pub mod timescale;
pub mod topics;

use anyhow::Result;
use datafusion::arrow::record_batch::RecordBatch;

use crate::config::SinkConfig;
use crate::internal_events::Events;
use crate::progress::{PartitionCheckpoint, SourcePosition};

pub use parquet::ParquetSink;
pub use timescale::{TimescaleOptions, TimescaleSink};
pub use topics::TopicSink;

/// Everything one pipeline step produced.
#[derive(Default)]
pub struct FlushSet {
    pub raw: Vec<RecordBatch>,
    pub updates_1m: Vec<RecordBatch>,
    pub updates_15m: Vec<RecordBatch>,
    pub finals_1m: Vec<RecordBatch>,
    pub finals_15m: Vec<RecordBatch>,
    pub scores: Vec<RecordBatch>,
    pub predictions: Vec<RecordBatch>,
    pub dead_letters: Vec<RecordBatch>,
    /// The next offset per source partition once this flush is stored.
    pub offsets: Vec<SourcePosition>,
    /// Engine state to store with this flush (sinks that keep offsets with the data).
    pub checkpoints: Vec<PartitionCheckpoint>,
    /// Kafka timestamps (ms since the epoch) of this flush's messages, for the
    /// end-to-end latency once it is stored.
    pub arrivals_ms: Vec<i64>,
}

impl FlushSet {
    /// Whether it holds any row for a table or a topic.
    pub fn has_rows(&self) -> bool {
        [
            &self.raw,
            &self.updates_1m,
            &self.updates_15m,
            &self.finals_1m,
            &self.finals_15m,
            &self.scores,
            &self.predictions,
            &self.dead_letters,
        ]
        .iter()
        .any(|g| g.iter().any(|b| b.num_rows() > 0))
    }

    /// Rows per table (`parquet::TABLES` order) a sink stores of this flush: upsert
    /// sinks every rollup emission, append-only sinks the final ones.
    pub fn table_rows(&self, upserts: bool) -> [(&'static str, u64); 6] {
        let count = |b: &[RecordBatch]| b.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        let (r1, r15) = if upserts {
            (&self.updates_1m, &self.updates_15m)
        } else {
            (&self.finals_1m, &self.finals_15m)
        };
        let groups = [
            &self.raw,
            r1,
            r15,
            &self.scores,
            &self.predictions,
            &self.dead_letters,
        ];
        std::array::from_fn(|i| (parquet::TABLES[i], count(groups[i])))
    }
}

/// The configured sink.
pub enum Sink {
    Parquet(ParquetSink),
    Timescale(Box<TimescaleSink>),
}

impl Sink {
    /// `database_url`: the TimescaleDB sink's database (the pipeline reads it from the
    /// environment).
    pub async fn from_config(cfg: &SinkConfig, pipeline: &str, database_url: &str) -> Result<Self> {
        match cfg {
            SinkConfig::Parquet {
                path,
                rows_per_file,
            } => Ok(Sink::Parquet(ParquetSink::create(
                path.as_ref(),
                *rows_per_file,
            )?)),
            SinkConfig::Timescale {
                consumer_group,
                apply_schema,
                refresh_interval,
                retention_interval,
                max_backoff,
            } => {
                let opts = TimescaleOptions {
                    url: database_url.to_owned(),
                    consumer_group: consumer_group
                        .clone()
                        .unwrap_or_else(|| pipeline.to_owned()),
                    apply_schema: *apply_schema,
                    refresh_interval: *refresh_interval,
                    retention_interval: *retention_interval,
                    max_backoff: *max_backoff,
                };
                Ok(Sink::Timescale(Box::new(
                    TimescaleSink::connect(opts).await?,
                )))
            }
        }
    }

    /// Stores one flush; returns the rows it stored per table.
    pub async fn write(
        &mut self,
        set: FlushSet,
        events: &Events,
    ) -> Result<[(&'static str, u64); 6]> {
        match self {
            Sink::Parquet(p) => {
                let rows = set.table_rows(false);
                p.write(set)?;
                Ok(rows)
            }
            Sink::Timescale(t) => {
                t.write(&set, events).await?;
                Ok(set.table_rows(true))
            }
        }
    }

    pub async fn close(self, events: &Events) -> Result<()> {
        match self {
            Sink::Parquet(p) => p.close(),
            Sink::Timescale(t) => {
                t.close(events).await;
                Ok(())
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::Parquet(p) => p.describe(),
            Sink::Timescale(t) => t.describe(),
        }
    }
}
