//! The Apache edition's maintenance, run by the sink on its schedules: the stand-ins
//! for continuous aggregates are refreshed and retention is enforced, both through
//! `SECURITY DEFINER` functions of the schema so that the least-privilege writer role
//! may call them.

use tokio_postgres::Client;

use crate::error::{DbError, PgContext};

/// Refreshes the Apache stand-ins for continuous aggregates (the invalidated buckets of
/// `gpu_temp_15min`, the `fleet_health_summary` view) through
/// `gpu_health.refresh_aggregates()`, which runs as their owner so that
/// the least-privilege writer role may call it.
pub async fn refresh_views(client: &Client) -> Result<(), DbError> {
    client
        .query("SELECT gpu_health.refresh_aggregates()", &[])
        .await
        .doing(|| "refreshing the aggregate views".into())?;
    Ok(())
}

/// Drops chunks older than each hypertable's policy (`gpu_health.retention_policies`)
/// through `gpu_health.enforce_retention()`; returns how many chunks went.
pub async fn enforce_retention(client: &Client) -> Result<u64, DbError> {
    let rows = client
        .query("SELECT * FROM gpu_health.enforce_retention()", &[])
        .await
        .doing(|| "enforcing retention with drop_chunks".into())?;
    Ok(rows.len() as u64)
}
