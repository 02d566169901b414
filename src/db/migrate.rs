//! Applies the ordered migrations of `schema/` (compiled in): every common file plus
//! the files of the detected edition (`NNN_name.timescale.sql` / `.apache.sql`), each
//! in its own transaction unless its first line is `-- gpu-health: no-transaction`,
//! and records them in `gpu_health.schema_migrations` with a checksum. Re-applying
//! changes nothing; a recorded file whose text changed is an error, not a silent skip.

use crate::error::{DbError, PgContext};
use tokio_postgres::Client;

use super::{Edition, edition};

/// The migrations, in order. `migrations_match_the_schema_directory` checks this list.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "001_tables.sql",
        include_str!("../../schema/001_tables.sql"),
    ),
    (
        "002_grants.sql",
        include_str!("../../schema/002_grants.sql"),
    ),
    (
        "003_aggregates.apache.sql",
        include_str!("../../schema/003_aggregates.apache.sql"),
    ),
    (
        "003_aggregates.timescale.sql",
        include_str!("../../schema/003_aggregates.timescale.sql"),
    ),
    (
        "004_policies.timescale.sql",
        include_str!("../../schema/004_policies.timescale.sql"),
    ),
    (
        "005_incremental_temp_15min.apache.sql",
        include_str!("../../schema/005_incremental_temp_15min.apache.sql"),
    ),
    (
        "006_engine_checkpoints.sql",
        include_str!("../../schema/006_engine_checkpoints.sql"),
    ),
    (
        "007_real_fleets.sql",
        include_str!("../../schema/007_real_fleets.sql"),
    ),
];

const NO_TRANSACTION: &str = "-- gpu-health: no-transaction";

fn applies_to(name: &str, ed: Edition) -> bool {
    match (
        name.ends_with(".timescale.sql"),
        name.ends_with(".apache.sql"),
    ) {
        (true, _) => ed == Edition::Timescale,
        (_, true) => ed == Edition::Apache,
        _ => true,
    }
}

/// FNV-1a 64 of the file text: enough to notice an edited migration.
fn checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What `apply` did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub edition: Edition,
    pub applied: Vec<String>,
    pub already: Vec<String>,
}

/// The migrations of this edition not yet recorded (none when the schema is current).
pub async fn pending(client: &Client) -> Result<Vec<&'static str>, DbError> {
    let reading = || "reading the applied migrations".to_owned();
    let present = client
        .query_one(
            "SELECT to_regclass('gpu_health.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .doing(reading)?
        .get::<_, bool>(0);
    let recorded: Vec<String> = if present {
        client
            .query("SELECT version FROM gpu_health.schema_migrations", &[])
            .await
            .doing(reading)?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    let ed = edition(client).await?;
    Ok(MIGRATIONS
        .iter()
        .filter(|(n, _)| applies_to(n, ed) && !recorded.iter().any(|r| r == n))
        .map(|(n, _)| *n)
        .collect())
}

/// Applies what is missing; idempotent.
pub async fn apply(client: &mut Client) -> Result<ApplyReport, DbError> {
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS timescaledb;
             CREATE SCHEMA IF NOT EXISTS gpu_health;
             CREATE TABLE IF NOT EXISTS gpu_health.schema_migrations (
                 version text PRIMARY KEY,
                 checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());",
        )
        .await
        .doing(|| "creating the migrations table".into())?;
    let ed = edition(client).await?;
    let mut report = ApplyReport {
        edition: ed,
        applied: Vec::new(),
        already: Vec::new(),
    };
    for (name, sql) in MIGRATIONS.iter().filter(|(n, _)| applies_to(n, ed)) {
        let sum = checksum(sql);
        let recorded = client
            .query_opt(
                "SELECT checksum FROM gpu_health.schema_migrations WHERE version = $1",
                &[name],
            )
            .await
            .doing(|| format!("reading the record of {name}"))?;
        if let Some(row) = recorded {
            let old: String = row.get(0);
            if old != sum {
                return Err(DbError::Schema(format!(
                    "migration {name} was applied with checksum {old} but the file now has {sum}: \
                     migrations are append-only, add a new file instead"
                )));
            }
            report.already.push((*name).to_owned());
            continue;
        }
        let record = "INSERT INTO gpu_health.schema_migrations (version, checksum) VALUES ($1, $2)";
        if sql.starts_with(NO_TRANSACTION) {
            let applying = || format!("applying {name}");
            client.batch_execute(sql).await.doing(applying)?;
            client
                .execute(record, &[name, &sum])
                .await
                .doing(applying)?;
        } else {
            let applying = || format!("applying {name}");
            let tx = client.transaction().await.doing(applying)?;
            tx.batch_execute(sql).await.doing(applying)?;
            tx.execute(record, &[name, &sum]).await.doing(applying)?;
            tx.commit().await.doing(applying)?;
        }
        report.applied.push((*name).to_owned());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_match_the_schema_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schema");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(files, listed);
    }

    #[test]
    fn edition_files_apply_only_to_their_edition() {
        assert!(applies_to("001_tables.sql", Edition::Apache));
        assert!(applies_to("003_aggregates.apache.sql", Edition::Apache));
        assert!(!applies_to("003_aggregates.timescale.sql", Edition::Apache));
        assert!(applies_to("004_policies.timescale.sql", Edition::Timescale));
        assert!(!applies_to("003_aggregates.apache.sql", Edition::Timescale));
    }
}
