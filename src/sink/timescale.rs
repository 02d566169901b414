//! The TimescaleDB sink (DESIGN 4, 6): each flush is one transaction holding the raw
//! rows (binary COPY straight into `gpu_metrics`, or through a staging table with
//! `ON CONFLICT DO NOTHING` once a conflict shows duplicates are possible), the rollups
//! and scores it emitted (set-based upsert from staging), its dead letters, and the
//! source offsets and engine checkpoints it consumed (through the state store,
//! `crate::db::state`), and the `gpu_assets` rows its raw rows imply. An error of the
//! `Retriable` class (a lost connection, a restarting server) is retried with capped
//! backoff while the source waits (input paused, memory bounded by one flush); nothing
//! is lost.
//! On the Apache edition it also logs the time range each flush changed, refreshes the
//! aggregates by those ranges and enforces retention.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use datafusion::arrow::array::{Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures_util::SinkExt;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Transaction};
use tracing::{debug, error, info, warn};

use super::FlushSet;
use super::topics::rows_as_json;
use crate::db::copy::{
    column_list, copy_header, copy_trailer, encode_rows, staging_ddl, upsert_from_staging,
};
use crate::db::maintain::{enforce_retention, refresh_views};
use crate::db::state::StateStore;
use crate::db::{Edition, assets, connect, edition, redact, timestamptz};
use crate::error::{DbError, ErrorClass, PgContext, chain};
use crate::event::dead_letter::{
    DeadLetter, DeadReason, dead_letter_schema, dead_letters_to_batch, printable,
};
use crate::event::schema::raw_schema;
use crate::health::predict::predictions_schema;
use crate::health::scores::scores_schema;
use crate::internal_events::{AlreadyStored, DeadLettered, Events, MaintenanceFailed, SinkRetried};
use crate::window::rollup::rollup_schema;

/// One target table and how rows reach it.
struct Target {
    table: &'static str,
    staging: &'static str,
    schema: SchemaRef,
    key: &'static [&'static str],
    update: bool,
    /// Try a plain COPY into the table first (insert-only rows whose duplicates are rare).
    direct_first: bool,
}

fn targets() -> [Target; 6] {
    [
        Target {
            table: "gpu_metrics",
            staging: "gh_stage_raw",
            schema: raw_schema(),
            key: &["time", "gpu_uuid"],
            update: false,
            direct_first: true,
        },
        Target {
            table: "gpu_metrics_1min",
            staging: "gh_stage_1min",
            schema: rollup_schema(),
            key: &["time", "gpu_uuid"],
            update: true,
            direct_first: false,
        },
        Target {
            table: "gpu_metrics_15min",
            staging: "gh_stage_15min",
            schema: rollup_schema(),
            key: &["time", "gpu_uuid"],
            update: true,
            direct_first: false,
        },
        Target {
            table: "gpu_health_scores",
            staging: "gh_stage_scores",
            schema: scores_schema(),
            key: &["time", "gpu_uuid"],
            update: true,
            direct_first: false,
        },
        Target {
            table: "gpu_failure_predictions",
            staging: "gh_stage_predictions",
            schema: predictions_schema(),
            key: &["time", "gpu_uuid", "model_name"],
            update: true,
            direct_first: false,
        },
        Target {
            table: "gpu_metrics_dead_letters",
            staging: "gh_stage_dead",
            schema: dead_letter_schema(),
            key: &["\"topic\"", "\"partition\"", "\"offset\"", "\"reason\""],
            update: false,
            direct_first: false,
        },
    ]
}

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct TimescaleOptions {
    pub url: String,
    pub consumer_group: String,
    pub apply_schema: bool,
    pub refresh_interval: Duration,
    pub retention_interval: Duration,
    pub max_backoff: Duration,
}

pub struct TimescaleSink {
    opts: TimescaleOptions,
    client: Client,
    /// Where the consumed offsets and checkpoints go, in each flush's transaction.
    state: StateStore,
    edition: Edition,
    targets: [Target; 6],
    last_refresh: Option<Instant>,
    last_retention: Option<Instant>,
    dirty_views: bool,
    /// After a failed maintenance run: not before this time, and the next wait.
    maintenance_after: Option<Instant>,
    maintenance_backoff: Duration,
    /// Flushes left that take the staging path for insert-only rows, after a direct
    /// COPY met an existing key (a replay of stored input): a replay stays on the
    /// cheap-to-fail path, and a fresh stream returns to direct COPY.
    staging_flushes_left: u32,
}

/// How many flushes use staging after a direct COPY met a conflict.
const STAGING_AFTER_CONFLICT: u32 = 16;

async fn prepare_session(client: &Client, targets: &[Target]) -> Result<(), DbError> {
    for t in targets {
        let ddl = staging_ddl(t.staging, &t.schema).map_err(|e| DbError::Encode {
            doing: format!("laying out the staging table for {}", t.table),
            source: e.into(),
        })?;
        client
            .batch_execute(&ddl)
            .await
            .doing(|| format!("creating staging table for {}", t.table))?;
    }
    Ok(())
}

impl TimescaleSink {
    pub async fn connect(opts: TimescaleOptions) -> Result<Self, DbError> {
        let mut client = connect(&opts.url).await?;
        if opts.apply_schema {
            let r = crate::db::migrate::apply(&mut client).await?;
            info!(applied = ?r.applied, edition = r.edition.as_str(), "schema applied");
        }
        let pending = crate::db::migrate::pending(&client).await?;
        if !pending.is_empty() {
            return Err(DbError::Schema(format!(
                "the database at {} lacks migrations {}: run `gpu-health schema apply` first",
                redact(&opts.url),
                pending.join(", ")
            )));
        }
        let ed = edition(&client).await?;
        let targets = targets();
        prepare_session(&client, &targets).await?;
        Ok(TimescaleSink {
            state: StateStore::new(&opts.url, &opts.consumer_group),
            opts,
            client,
            edition: ed,
            targets,
            // The first refresh comes one interval after start (or at close).
            last_refresh: Some(Instant::now()),
            last_retention: None,
            dirty_views: false,
            maintenance_after: None,
            maintenance_backoff: MAINTENANCE_BACKOFF,
            staging_flushes_left: 0,
        })
    }

    /// Sends insert-only rows through staging from the next flush on, as after a
    /// conflict (the bench times the replay path with it).
    pub fn prefer_staging(&mut self) {
        self.staging_flushes_left = u32::MAX;
    }

    pub fn describe(&self) -> String {
        format!(
            "timescaledb {} ({})",
            redact(&self.opts.url),
            self.edition.as_str()
        )
    }

    /// Writes one flush; retries it whole while the error is `Retriable`. A `Data`
    /// error (a row the database refuses) writes the flush again with every table
    /// isolated: the refused rows are found by bisection and dead-lettered
    /// (`db_rejected`, with the SQLSTATE and message), the rest is stored in the same
    /// transaction. Only a `Configuration` error is returned.
    pub async fn write(&mut self, set: &FlushSet, events: &Events) -> Result<(), DbError> {
        let mut backoff = Duration::from_millis(100);
        let mut isolate = false;
        loop {
            match self.try_write(set, isolate).await {
                Ok(stored) => {
                    self.dirty_views |= stored.rows > 0;
                    if stored.raw_existing > 0 {
                        events.emit(AlreadyStored {
                            count: stored.raw_existing,
                        });
                    }
                    if stored.refused > 0 {
                        events.emit(DeadLettered {
                            reason: DeadReason::DbRejected.as_str(),
                            count: stored.refused,
                        });
                    }
                    break;
                }
                Err(e) if e.class() == ErrorClass::Retriable => {
                    self.reconnect(&e, &mut backoff, events).await
                }
                Err(e) if e.class() == ErrorClass::Data && !isolate => {
                    warn!(error = %chain(&e), "the database refused rows; isolating them");
                    isolate = true;
                }
                Err(e) => return Err(e),
            }
        }
        self.maintain(false, events).await;
        Ok(())
    }

    /// Waits out one backoff step after a lost connection, then tries a new one; the
    /// caller retries its work either way.
    async fn reconnect(&mut self, cause: &DbError, backoff: &mut Duration, events: &Events) {
        events.emit(SinkRetried {
            error: &chain(cause),
            backoff: *backoff,
        });
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(self.opts.max_backoff);
        if let Ok(client) = connect(&self.opts.url).await
            && prepare_session(&client, &self.targets).await.is_ok()
        {
            self.client = client;
        }
    }

    /// One attempt at a flush in one transaction. `isolate`: every table through
    /// staging, in savepoints that find refused rows by bisection.
    async fn try_write(&mut self, set: &FlushSet, isolate: bool) -> Result<Stored, DbError> {
        let mut tx = self
            .client
            .transaction()
            .await
            .doing(|| "starting the flush's transaction".into())?;
        let try_direct = self.staging_flushes_left == 0 && !isolate;
        let mut conflicted = false;
        let groups: [&[RecordBatch]; 6] = [
            &set.raw,
            &set.updates_1m,
            &set.updates_15m,
            &set.scores,
            &set.predictions,
            &set.dead_letters,
        ];
        let mut stored = Stored::default();
        let mut refused: Vec<DeadLetter> = Vec::new();
        for (t, batches) in self.targets.iter().zip(groups) {
            let mut batches = batches.to_vec();
            if t.table == DEAD_LETTERS && !refused.is_empty() {
                batches.push(
                    dead_letters_to_batch(&refused).map_err(|e| DbError::Encode {
                        doing: "laying out the refused rows' dead letters".into(),
                        source: e.into(),
                    })?,
                );
            }
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            if n == 0 {
                continue;
            }
            let started = Instant::now();
            // Raw rows offered less those stored and refused: the ones already there.
            let mut existing = |stored_now: u64, refused_now: u64| {
                if t.table == RAW {
                    stored.raw_existing += (n as u64).saturating_sub(stored_now + refused_now);
                }
            };
            if isolate {
                let mut rejected = Vec::new();
                let copied = store_isolated(&mut tx, t, &batches, &mut rejected).await?;
                existing(copied, rejected.len() as u64);
                stored.rows += copied;
                for (row, e) in rejected {
                    if t.table == DEAD_LETTERS {
                        // Nothing left to set it aside in: say so loudly.
                        error!(error = %chain(&e), "the database refused a dead letter");
                        continue;
                    }
                    refused.push(refused_letter(t.table, &row, &e)?);
                    stored.refused += 1;
                }
                continue;
            }
            if t.direct_first && try_direct {
                match copy_direct(&mut tx, t.table, &batches).await? {
                    Some(copied) => {
                        existing(copied, 0);
                        stored.rows += copied;
                        debug!(
                            table = t.table,
                            rows = n,
                            ms = started.elapsed().as_millis() as u64,
                            "copied"
                        );
                        continue;
                    }
                    None => conflicted = true,
                }
            }
            let upserted = stage_and_upsert(&tx, t, &batches).await?;
            existing(upserted, 0);
            stored.rows += upserted;
            debug!(
                table = t.table,
                rows = n,
                ms = started.elapsed().as_millis() as u64,
                "staged and upserted"
            );
        }
        let flush_assets = assets::from_raw(&set.raw).map_err(|e| DbError::Encode {
            doing: "reading the flush's GPU identities".into(),
            source: e.into(),
        })?;
        assets::upsert(&tx, &flush_assets).await?;
        if self.edition == Edition::Apache
            && let Some(span) = assets::span(&flush_assets)
        {
            invalidate(&tx, span).await?;
        }
        self.state
            .record(&tx, &set.offsets, &set.checkpoints)
            .await?;
        tx.commit().await.doing(|| "committing the flush".into())?;
        self.staging_flushes_left = if conflicted {
            STAGING_AFTER_CONFLICT
        } else {
            self.staging_flushes_left.saturating_sub(1)
        };
        Ok(stored)
    }

    /// Apache edition: refreshes the aggregate views and enforces retention on their
    /// schedules. It never fails the job: the flush it follows is stored. A failure is
    /// logged, counted and retried after a backoff (doubling up to the refresh
    /// interval); at the end of a run (`force`) an unavailable database is waited for.
    pub async fn maintain(&mut self, force: bool, events: &Events) {
        if self.edition != Edition::Apache {
            return;
        }
        if !force && self.maintenance_after.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_maintain(force).await {
                Ok(()) => {
                    self.maintenance_after = None;
                    self.maintenance_backoff = MAINTENANCE_BACKOFF;
                    return;
                }
                Err((_, e)) if e.class() == ErrorClass::Retriable && force => {
                    self.reconnect(&e, &mut backoff, events).await
                }
                Err((what, e)) => {
                    let retry_in = self.maintenance_backoff;
                    events.emit(MaintenanceFailed {
                        what,
                        error: &chain(&e),
                        retry_in,
                    });
                    self.maintenance_after = Some(Instant::now() + retry_in);
                    self.maintenance_backoff =
                        (retry_in * 2).min(self.opts.refresh_interval.max(MAINTENANCE_BACKOFF));
                    if e.class() == ErrorClass::Retriable {
                        self.reconnect(&e, &mut backoff, events).await;
                    }
                    return;
                }
            }
        }
    }

    async fn try_maintain(&mut self, force: bool) -> Result<(), (&'static str, DbError)> {
        let due =
            |last: Option<Instant>, every: Duration| last.is_none_or(|l| l.elapsed() >= every);
        if self.dirty_views && (force || due(self.last_refresh, self.opts.refresh_interval)) {
            let started = Instant::now();
            refresh_views(&self.client)
                .await
                .map_err(|e| ("refreshing the aggregate views", e))?;
            info!(
                ms = started.elapsed().as_millis() as u64,
                "aggregate views refreshed"
            );
            self.last_refresh = Some(Instant::now());
            self.dirty_views = false;
        }
        if force || due(self.last_retention, self.opts.retention_interval) {
            let dropped = enforce_retention(&self.client)
                .await
                .map_err(|e| ("enforcing retention", e))?;
            if dropped > 0 {
                info!(dropped, "retention dropped chunks");
            }
            self.last_retention = Some(Instant::now());
        }
        Ok(())
    }

    pub async fn close(mut self, events: &Events) {
        self.maintain(true, events).await
    }
}

/// What one flush attempt stored.
#[derive(Default)]
struct Stored {
    /// Rows inserted or updated.
    rows: u64,
    /// Rows the database refused, now dead letters.
    refused: u64,
    /// Raw rows whose key the table held already (left as they were).
    raw_existing: u64,
}

/// The dead-letter table (refused rows go there, and a refused dead letter cannot).
const DEAD_LETTERS: &str = "gpu_metrics_dead_letters";
/// The raw table (its duplicates count in the books).
const RAW: &str = "gpu_metrics";

/// First wait after a failed maintenance run.
const MAINTENANCE_BACKOFF: Duration = Duration::from_secs(5);

/// Stages the batches and upserts them into the target; returns the rows changed.
async fn stage_and_upsert(
    tx: &Transaction<'_>,
    t: &Target,
    batches: &[RecordBatch],
) -> Result<u64, DbError> {
    copy_batches(tx, t.staging, batches)
        .await
        .map_err(|e| e.within(format!("copying into staging for {}", t.table)))?;
    let sql = upsert_from_staging(t.table, t.staging, &t.schema, t.key, t.update);
    tx.execute(&sql, &[])
        .await
        .doing(|| format!("upserting into {}", t.table))
}

/// Stores the batches in savepoints, halving a part the database refuses until the
/// refused rows stand alone: they go to `refused` with the error, every other row is
/// stored. A part costs one round trip, so k refused rows among n cost about
/// 2k·log2(n) of them.
async fn store_isolated(
    tx: &mut Transaction<'_>,
    t: &Target,
    batches: &[RecordBatch],
    refused: &mut Vec<(RecordBatch, DbError)>,
) -> Result<u64, DbError> {
    let mut rows = 0;
    let mut parts: Vec<RecordBatch> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .cloned()
        .collect();
    while let Some(part) = parts.pop() {
        let sp = tx
            .savepoint("gh_isolate")
            .await
            .doing(|| format!("opening a savepoint for {}", t.table))?;
        match stage_and_upsert(&sp, t, std::slice::from_ref(&part)).await {
            Ok(n) => {
                sp.batch_execute(&format!("DELETE FROM {}", t.staging))
                    .await
                    .doing(|| format!("emptying staging for {}", t.table))?;
                sp.commit()
                    .await
                    .doing(|| format!("releasing the savepoint for {}", t.table))?;
                rows += n;
            }
            Err(e) if e.class() == ErrorClass::Data => {
                sp.rollback()
                    .await
                    .doing(|| format!("rolling back the savepoint for {}", t.table))?;
                let n = part.num_rows();
                if n == 1 {
                    refused.push((part, e));
                } else {
                    parts.push(part.slice(n / 2, n - n / 2));
                    parts.push(part.slice(0, n / 2));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(rows)
}

/// The dead letter of a row that `table` refused: the row as flat JSON (the column
/// names), the SQLSTATE and message as its detail, and as its position the table with
/// a stable hash of the row, so that a replay stores it once.
fn refused_letter(table: &str, row: &RecordBatch, e: &DbError) -> Result<DeadLetter, DbError> {
    let encoding = |source: crate::error::BoxError| DbError::Encode {
        doing: format!("describing a row refused by {table}"),
        source,
    };
    let json = rows_as_json(row)
        .map_err(|e| encoding(e.into()))?
        .pop()
        .unwrap_or_default();
    let gpu_uuid = json
        .get("gpu_uuid")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let time_us = row
        .column_by_name("time")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .filter(|a| a.is_valid(0))
        .map(|a| a.value(0));
    let value = serde_json::to_vec(&json).map_err(|e| encoding(e.into()))?;
    let digest = Sha256::new()
        .chain_update(table.as_bytes())
        .chain_update(&value)
        .finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let code = e.sqlstate().map_or("none", |c| c.code());
    Ok(DeadLetter {
        reason: DeadReason::DbRejected,
        detail: printable(format!(
            "{table} refused the row: SQLSTATE {code}: {}",
            chain(e)
        )),
        topic: table.to_owned(),
        partition: -1,
        offset: i64::from_be_bytes(head) & i64::MAX,
        key: gpu_uuid.as_ref().map(|g| g.as_bytes().to_vec()),
        value,
        gpu_uuid,
        time_us,
    })
}

/// COPYs the batches straight into `table` inside a savepoint. `None` when a row's key
/// already exists (SQLSTATE 23505): the savepoint is rolled back and the caller stages.
async fn copy_direct(
    tx: &mut Transaction<'_>,
    table: &str,
    batches: &[RecordBatch],
) -> Result<Option<u64>, DbError> {
    let sp = tx
        .savepoint("gh_direct")
        .await
        .doing(|| "opening the direct COPY's savepoint".into())?;
    match copy_batches(&sp, table, batches).await {
        Ok(n) => {
            sp.commit()
                .await
                .doing(|| "releasing the direct COPY's savepoint".into())?;
            Ok(Some(n))
        }
        Err(e) if e.is_unique_violation() => {
            sp.rollback()
                .await
                .doing(|| "rolling the direct COPY back".into())?;
            Ok(None)
        }
        Err(e) => Err(e.within(format!("copying into {table}"))),
    }
}

/// Binary COPY of the batches into `target`; returns the rows copied.
async fn copy_batches(
    tx: &Transaction<'_>,
    target: &str,
    batches: &[RecordBatch],
) -> Result<u64, DbError> {
    let copying = || format!("COPY into {target}");
    // Columns by name: a migration appends new columns at the end of a table.
    let columns = batches
        .first()
        .map(|b| format!(" ({})", column_list(&b.schema())))
        .unwrap_or_default();
    let sink = tx
        .copy_in(&format!(
            "COPY {target}{columns} FROM STDIN (FORMAT binary)"
        ))
        .await
        .doing(copying)?;
    futures_util::pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(1 << 20);
    copy_header(&mut buf);
    for b in batches {
        encode_rows(b, &mut buf).map_err(|e| DbError::Encode {
            doing: format!("encoding rows for {target}"),
            source: e.into(),
        })?;
        if buf.len() > 4 << 20 {
            sink.send(buf.split().freeze()).await.doing(copying)?;
        }
    }
    copy_trailer(&mut buf);
    sink.send(buf.split().freeze()).await.doing(copying)?;
    sink.finish().await.doing(copying)
}

/// Apache edition: logs the event-time range of the flush's raw rows, so that the next
/// refresh recomputes only the aggregate buckets they touched.
async fn invalidate(tx: &Transaction<'_>, (lo, hi): (i64, i64)) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO gpu_health.aggregate_invalidations (lo, hi) VALUES ($1, $2)",
        &[&timestamptz(lo), &timestamptz(hi)],
    )
    .await
    .doing(|| {
        "logging the changed time range for the aggregates (run `gpu-health schema apply`?)".into()
    })?;
    Ok(())
}
