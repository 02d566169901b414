//! `gpu-health schema status`: the edition, what this edition lacks and what replaces
//! it, applied migrations, and per table its kind, chunks, size, compression and
//! policies, read from TimescaleDB's information views.

use std::fmt::Write;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::{Edition, edition};

pub const TABLES: [&str; 7] = [
    "gpu_metrics",
    "gpu_metrics_1min",
    "gpu_metrics_15min",
    "gpu_health_scores",
    "gpu_failure_predictions",
    "gpu_assets",
    "gpu_metrics_dead_letters",
];
pub const VIEWS: [&str; 2] = ["gpu_temp_15min", "fleet_health_summary"];

/// Renders the status report as text.
pub async fn status(client: &Client) -> Result<String> {
    let mut o = String::new();
    let ed = edition(client).await?;
    let version: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
            &[],
        )
        .await
        .context("reading the TimescaleDB version")?
        .get(0);
    writeln!(o, "edition: {} (TimescaleDB {version})", ed.as_str())?;
    if ed == Edition::Apache {
        writeln!(o, "missing in this edition, and what replaces it:")?;
        writeln!(
            o,
            "  continuous aggregates -> gpu_temp_15min: a hypertable whose changed buckets the processor recomputes \
             after it writes (gpu_health.aggregate_invalidations); fleet_health_summary: a materialized view it refreshes"
        )?;
        writeln!(
            o,
            "  retention policies    -> drop_chunks run by the processor on a schedule (gpu_health.retention_policies)"
        )?;
        writeln!(
            o,
            "  compression           -> unavailable (chunks stay uncompressed)"
        )?;
    }
    let applied = client
        .query(
            "SELECT version, to_char(applied_at, 'YYYY-MM-DD HH24:MI:SS') FROM gpu_health.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .context("reading gpu_health.schema_migrations: has `schema apply` run?")?;
    writeln!(o, "migrations applied: {}", applied.len())?;
    for r in &applied {
        writeln!(
            o,
            "  {} at {}",
            r.get::<_, String>(0),
            r.get::<_, String>(1)
        )?;
    }
    writeln!(o, "tables:")?;
    writeln!(
        o,
        "  {:<26} {:<11} {:>7} {:>12} {:>14}",
        "table", "kind", "chunks", "size", "rows (est.)"
    )?;
    for t in TABLES {
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = $1),
                        (SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = $1),
                        to_regclass($1) IS NOT NULL",
                &[&t],
            )
            .await?;
        let (hyper, chunks, exists): (bool, i64, bool) = (row.get(0), row.get(1), row.get(2));
        if !exists {
            writeln!(o, "  {t:<26} MISSING")?;
            continue;
        }
        let size_sql = if hyper {
            format!(
                "SELECT pg_size_pretty(hypertable_size('{t}')), (SELECT approximate_row_count('{t}'))"
            )
        } else {
            format!(
                "SELECT pg_size_pretty(pg_total_relation_size('{t}')), (SELECT reltuples::bigint FROM pg_class WHERE oid = '{t}'::regclass)"
            )
        };
        let s = client.query_one(&size_sql, &[]).await?;
        let size: String = s.get(0);
        let rows: i64 = s.get(1);
        let kind = if hyper { "hypertable" } else { "table" };
        writeln!(
            o,
            "  {t:<26} {kind:<11} {chunks:>7} {size:>12} {:>14}",
            rows.max(0)
        )?;
    }
    for v in VIEWS {
        let row = client
            .query_opt(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates WHERE view_name = $1",
                &[&v],
            )
            .await?;
        let kind = if row.is_some() {
            "continuous aggregate"
        } else {
            let m = client
                .query_opt(
                    "SELECT ispopulated FROM pg_matviews WHERE matviewname = $1",
                    &[&v],
                )
                .await?;
            let table = client
                .query_opt(
                    "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = $1",
                    &[&v],
                )
                .await?;
            match (m, table) {
                (Some(r), _) if r.get::<_, bool>(0) => "materialized view (populated)",
                (Some(_), _) => "materialized view (not yet refreshed)",
                (None, Some(_)) => "hypertable refreshed by invalidated range",
                (None, None) => "MISSING",
            }
        };
        writeln!(o, "  {v:<26} {kind}")?;
    }
    writeln!(o, "policies:")?;
    let jobs = client
        .query(
            "SELECT proc_name, coalesce(hypertable_name, ''), schedule_interval::text, coalesce(config::text, '')
               FROM timescaledb_information.jobs WHERE job_id >= 1000 ORDER BY hypertable_name, proc_name",
            &[],
        )
        .await?;
    for j in &jobs {
        writeln!(
            o,
            "  {:<32} {:<22} every {:<10} {}",
            j.get::<_, String>(0),
            j.get::<_, String>(1),
            j.get::<_, String>(2),
            j.get::<_, String>(3)
        )?;
    }
    if ed == Edition::Apache {
        let r = client
            .query("SELECT hypertable::text, drop_after::text FROM gpu_health.retention_policies ORDER BY 1", &[])
            .await
            .context("reading gpu_health.retention_policies")?;
        for p in &r {
            writeln!(
                o,
                "  retention by the processor      {:<22} drop after {}",
                p.get::<_, String>(0),
                p.get::<_, String>(1)
            )?;
        }
        writeln!(o, "compression: unavailable on the apache edition")?;
    } else {
        writeln!(o, "compression:")?;
        for t in ["gpu_metrics", "gpu_metrics_1min", "gpu_metrics_15min"] {
            let r = client
                .query_opt(
                    &format!(
                        "SELECT coalesce(number_compressed_chunks, 0)::bigint, coalesce(pg_size_pretty(before_compression_total_bytes), '-'), coalesce(pg_size_pretty(after_compression_total_bytes), '-') FROM hypertable_compression_stats('{t}')"
                    ),
                    &[],
                )
                .await?;
            if let Some(r) = r {
                writeln!(
                    o,
                    "  {t:<26} {} chunks compressed, {} -> {}",
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2)
                )?;
            }
        }
    }
    Ok(o)
}
