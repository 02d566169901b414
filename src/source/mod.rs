//! Sources: where messages come from. A source hands out micro-batches of messages
//! in partition order; `None` means a bounded input has ended.

pub mod file;

use anyhow::Result;

use crate::config::SourceConfig;
use crate::dump::Message;

pub use file::FileSource;

/// The configured source. An enum rather than a trait object: sources differ in
/// how they end and commit, and the pipeline matches on that.
pub enum Source {
    File(FileSource),
}

impl Source {
    pub fn from_config(cfg: &SourceConfig) -> Result<Self> {
        match cfg {
            SourceConfig::File { path, topic } => Ok(Source::File(FileSource::open(path, topic)?)),
        }
    }

    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Message>>> {
        match self {
            Source::File(f) => f.next_batch(max),
        }
    }

    /// Whether the input is bounded (a replay that flushes every window at its end).
    pub fn is_bounded(&self) -> bool {
        matches!(self, Source::File(_))
    }

    pub fn describe(&self) -> String {
        match self {
            Source::File(f) => f.describe(),
        }
    }
}
