//! Sinks: where the pipeline's outputs go. Each flush hands a sink one `FlushSet`;
//! upsert sinks (databases, topics) take every rollup emission, append-only sinks
//! (Parquet) take each rollup once, when it is final.

pub mod parquet;

use anyhow::Result;
use datafusion::arrow::record_batch::RecordBatch;

use crate::config::SinkConfig;

pub use parquet::ParquetSink;

/// Everything one pipeline step produced.
#[derive(Default)]
pub struct FlushSet {
    pub raw: Vec<RecordBatch>,
    pub updates_1m: Vec<RecordBatch>,
    pub updates_15m: Vec<RecordBatch>,
    pub finals_1m: Vec<RecordBatch>,
    pub finals_15m: Vec<RecordBatch>,
    pub scores: Vec<RecordBatch>,
    pub dead_letters: Vec<RecordBatch>,
}

/// The configured sink.
pub enum Sink {
    Parquet(ParquetSink),
}

impl Sink {
    pub fn from_config(cfg: &SinkConfig) -> Result<Self> {
        match cfg {
            SinkConfig::Parquet {
                path,
                rows_per_file,
            } => Ok(Sink::Parquet(ParquetSink::create(
                path.as_ref(),
                *rows_per_file,
            )?)),
        }
    }

    pub async fn write(&mut self, set: FlushSet) -> Result<()> {
        match self {
            Sink::Parquet(p) => p.write(set),
        }
    }

    pub async fn close(self) -> Result<()> {
        match self {
            Sink::Parquet(p) => p.close(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::Parquet(p) => p.describe(),
        }
    }
}
