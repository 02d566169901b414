//! The state store: how far a consumer group has got, kept beside the data it
//! produced (DESIGN 4). Two tables, and every line of SQL that touches them:
//! `gpu_health.consumed_offsets` (the next offset per partition once a flush is
//! stored) and `gpu_health.engine_checkpoints` (a partition's encoded engine state and
//! the offset it was taken at). The sink records both inside each flush's transaction;
//! the Kafka source loads the checkpoints of the partitions it is assigned.

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::Transaction;
use tracing::warn;

use super::connect;
use crate::error::{DbError, PgContext, chain};
use crate::progress::{PartitionCheckpoint, SourcePosition};

/// One consumer group's rows in a database.
#[derive(Debug, Clone)]
pub struct StateStore {
    url: String,
    group: String,
}

/// A partition named by topic and number.
pub(crate) type PartitionKey = (String, i32);

impl StateStore {
    /// The store of `group` in the database at `url` (nothing is connected yet).
    pub fn new(url: &str, group: &str) -> Self {
        StateStore {
            url: url.to_owned(),
            group: group.to_owned(),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The stored checkpoints of `parts` (partitions without one are absent).
    pub(crate) async fn load(
        &self,
        parts: &[PartitionKey],
    ) -> Result<HashMap<PartitionKey, PartitionCheckpoint>, DbError> {
        let client = connect(&self.url).await?;
        let topics: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
        let partitions: Vec<i32> = parts.iter().map(|(_, p)| *p).collect();
        let rows = client
            .query(
                "SELECT c.topic, c.partition, c.next_offset, c.state
                   FROM gpu_health.engine_checkpoints c
                   JOIN unnest($2::text[], $3::int[]) AS a(topic, partition)
                     ON (a.topic, a.partition) = (c.topic, c.partition)
                  WHERE c.consumer_group = $1",
                &[&self.group, &topics, &partitions],
            )
            .await
            .doing(|| "reading the stored checkpoints".into())?;
        Ok(rows
            .iter()
            .map(|r| {
                let c = PartitionCheckpoint {
                    topic: r.get(0),
                    partition: r.get(1),
                    next_offset: r.get(2),
                    state: r.get(3),
                };
                ((c.topic.clone(), c.partition), c)
            })
            .collect())
    }

    /// `load`, waiting out an unavailable database with capped backoff: without its
    /// checkpoint no partition can start. A configuration error (a missing table, a
    /// refused login) is returned at once.
    pub(crate) async fn load_retrying(
        &self,
        parts: &[PartitionKey],
    ) -> Result<HashMap<PartitionKey, PartitionCheckpoint>, DbError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.load(parts).await {
                Ok(m) => return Ok(m),
                Err(e) if e.class() == crate::error::ErrorClass::Retriable => {
                    warn!(error = %chain(&e), backoff_ms = backoff.as_millis() as u64,
                          "cannot read the stored checkpoints; partitions wait");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records, inside a flush's transaction, the offsets it consumed and the engine
    /// checkpoints taken with it.
    pub(crate) async fn record(
        &self,
        tx: &Transaction<'_>,
        offsets: &[SourcePosition],
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<(), DbError> {
        for p in offsets {
            tx.execute(
                "INSERT INTO gpu_health.consumed_offsets (consumer_group, topic, partition, next_offset)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (consumer_group, topic, partition)
                 DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
                &[&self.group, &p.topic, &p.partition, &p.next_offset],
            )
            .await
            .doing(|| "recording consumed offsets".into())?;
        }
        for c in checkpoints {
            tx.execute(
                "INSERT INTO gpu_health.engine_checkpoints
                        (consumer_group, topic, partition, next_offset, state)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (consumer_group, topic, partition)
                 DO UPDATE SET next_offset = EXCLUDED.next_offset, state = EXCLUDED.state,
                               written_at = now()",
                &[
                    &self.group,
                    &c.topic,
                    &c.partition,
                    &c.next_offset,
                    &c.state,
                ],
            )
            .await
            .doing(|| "storing the engine checkpoint".into())?;
        }
        Ok(())
    }
}
