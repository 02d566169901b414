//! Where the input has got to, shared by the three parts that must agree on it:
//! sources resume at stored positions, the pipeline stamps each flush with them, and
//! sinks store them with the data. Also the count of flushes handed to the sink and not
//! yet stored, which a Kafka source waits on before giving partitions up.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How far a source has been consumed: the next offset to read per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// A partition's engine state at a position (encoded by `crate::checkpoint`): a
/// restart or a new owner of the partition resumes reading at `next_offset` with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCheckpoint {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    pub state: Vec<u8>,
}

/// What a consumer-group rebalance changed since the pipeline last asked.
#[derive(Debug, Default)]
pub struct Rebalance {
    /// Partitions newly owned, with their stored state (none: read from the start).
    pub restored: Vec<PartitionCheckpoint>,
    /// Partitions newly owned without stored state: read from their start.
    pub started: Vec<i32>,
    /// Partitions another instance owns now: their state goes.
    pub lost: Vec<i32>,
}

impl Rebalance {
    pub fn is_empty(&self) -> bool {
        self.restored.is_empty() && self.started.is_empty() && self.lost.is_empty()
    }
}

/// Flushes handed to the sink task and not yet stored.
#[derive(Debug, Default)]
pub struct InFlight {
    pending: Mutex<u64>,
    drained: Condvar,
}

impl InFlight {
    pub fn sent(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    pub fn stored(&self) {
        let mut n = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.drained.notify_all();
        }
    }

    /// The sink task has ended (done or failed): nothing more will be stored.
    pub fn closed(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = 0;
        self.drained.notify_all();
    }

    /// Blocks until every flush handed over is stored, or `limit` passes; returns
    /// whether they all were.
    pub fn wait_drained(&self, limit: Duration) -> bool {
        let n = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (n, _) = self
            .drained
            .wait_timeout_while(n, limit, |n| *n > 0)
            .unwrap_or_else(|e| e.into_inner());
        *n == 0
    }
}
