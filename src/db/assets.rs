//! `gpu_assets` from the raw rows of a flush: one row per GPU with the identity of its
//! latest sample (host, PCI bus, model, rack, cluster, datacenter) and the first and
//! last time it was seen. Upserted so that replays and out-of-order flushes converge:
//! `first_seen` only moves back, `last_seen` only forward, identity follows the newest
//! sample, and `tags` (the operators' own) are never touched.

use std::collections::HashMap;

use anyhow::Result;

use crate::error::{DbError, PgContext};
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::arrow::record_batch::RecordBatch;
use tokio_postgres::Transaction;

use super::timestamptz;

/// The identity columns, named alike in `gpu_assets` and `gpu_metrics`.
const IDENTITY: [&str; 6] = [
    "hostname",
    "pci_bus_id",
    "gpu_model",
    "rack_id",
    "cluster_id",
    "datacenter",
];

/// One GPU's asset row as seen in a flush.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub gpu_uuid: String,
    pub identity: [Option<String>; 6],
    pub first_seen_us: i64,
    pub last_seen_us: i64,
}

/// One asset per GPU in the batches; identity from each GPU's latest row.
pub fn from_raw(batches: &[RecordBatch]) -> Result<Vec<Asset>> {
    let mut out: HashMap<String, Asset> = HashMap::new();
    for b in batches {
        let col = |name: &str| -> Result<&StringArray> {
            Ok(b.column_by_name(name)
                .ok_or_else(|| anyhow::anyhow!("raw batch lacks column {name}"))?
                .as_string::<i32>())
        };
        let uuid = col("gpu_uuid")?;
        let identity: Vec<&StringArray> = IDENTITY.iter().map(|c| col(c)).collect::<Result<_>>()?;
        let time = b
            .column_by_name("time")
            .ok_or_else(|| anyhow::anyhow!("raw batch lacks column time"))?
            .as_primitive::<TimestampMicrosecondType>();
        for row in 0..b.num_rows() {
            let t = time.value(row);
            let ident = || {
                std::array::from_fn(|i| {
                    let a = identity[i];
                    a.is_valid(row).then(|| a.value(row).to_owned())
                })
            };
            match out.get_mut(uuid.value(row)) {
                Some(a) => {
                    a.first_seen_us = a.first_seen_us.min(t);
                    if t >= a.last_seen_us {
                        a.last_seen_us = t;
                        a.identity = ident();
                    }
                }
                None => {
                    out.insert(
                        uuid.value(row).to_owned(),
                        Asset {
                            gpu_uuid: uuid.value(row).to_owned(),
                            identity: ident(),
                            first_seen_us: t,
                            last_seen_us: t,
                        },
                    );
                }
            }
        }
    }
    let mut v: Vec<Asset> = out.into_values().collect();
    v.sort_by(|a, b| a.gpu_uuid.cmp(&b.gpu_uuid));
    Ok(v)
}

const UPSERT: &str = "
INSERT INTO gpu_assets AS a
       (gpu_uuid, hostname, pci_bus_id, gpu_model, rack_id, cluster_id, datacenter,
        first_seen, last_seen)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[])
ON CONFLICT (gpu_uuid) DO UPDATE SET
    hostname   = CASE WHEN EXCLUDED.last_seen >= a.last_seen THEN EXCLUDED.hostname   ELSE a.hostname   END,
    pci_bus_id = CASE WHEN EXCLUDED.last_seen >= a.last_seen THEN EXCLUDED.pci_bus_id ELSE a.pci_bus_id END,
    gpu_model  = CASE WHEN EXCLUDED.last_seen >= a.last_seen THEN EXCLUDED.gpu_model  ELSE a.gpu_model  END,
    rack_id    = CASE WHEN EXCLUDED.last_seen >= a.last_seen THEN EXCLUDED.rack_id    ELSE a.rack_id    END,
    cluster_id = CASE WHEN EXCLUDED.last_seen >= a.last_seen THEN EXCLUDED.cluster_id ELSE a.cluster_id END,
    datacenter = CASE WHEN EXCLUDED.last_seen >= a.last_seen THEN EXCLUDED.datacenter ELSE a.datacenter END,
    first_seen = least(a.first_seen, EXCLUDED.first_seen),
    last_seen  = greatest(a.last_seen, EXCLUDED.last_seen)";

/// The event-time range `[first, last]` the assets cover: that of their raw rows.
pub fn span(assets: &[Asset]) -> Option<(i64, i64)> {
    let lo = assets.iter().map(|a| a.first_seen_us).min()?;
    let hi = assets.iter().map(|a| a.last_seen_us).max()?;
    Some((lo, hi))
}

/// Upserts the assets of a flush (see `from_raw`), set-based (one statement).
pub async fn upsert(tx: &Transaction<'_>, assets: &[Asset]) -> Result<u64, DbError> {
    if assets.is_empty() {
        return Ok(0);
    }
    let uuids: Vec<&str> = assets.iter().map(|a| a.gpu_uuid.as_str()).collect();
    let ident: Vec<Vec<Option<&str>>> = (0..IDENTITY.len())
        .map(|i| assets.iter().map(|a| a.identity[i].as_deref()).collect())
        .collect();
    let first: Vec<DateTime<Utc>> = assets
        .iter()
        .map(|a| timestamptz(a.first_seen_us))
        .collect();
    let last: Vec<DateTime<Utc>> = assets.iter().map(|a| timestamptz(a.last_seen_us)).collect();
    let n = tx
        .execute(
            UPSERT,
            &[
                &uuids, &ident[0], &ident[1], &ident[2], &ident[3], &ident[4], &ident[5], &first,
                &last,
            ],
        )
        .await
        .doing(|| "upserting gpu_assets".into())?;
    Ok(n)
}
