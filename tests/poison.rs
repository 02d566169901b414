//! A poison row, an odd order or a failing maintenance run never stops the job and
//! never costs a good row (DESIGN 2.2, 4), against the real TimescaleDB:
//! - a dump written one partition after another gives the tables of the interleaved
//!   fixture;
//! - rows the database refuses (a constraint a DBA added) are found by bisection and
//!   dead-lettered as `db_rejected` with their SQLSTATE; every other row is stored;
//! - an aggregate refresh that fails after a stored flush is counted, not fatal.
//!
//! Expected values come from a plain backfill of the fixture into a database of its
//! own (`reference`): the interleaved order, no constraint, no refused row.

#[macro_use]
mod common;

use std::io::{BufRead, Write};
use std::path::Path;

use common::db::{
    CHECKSUM_TABLES, apply_schema, assert_rows_close, backfill, fixture_pipeline, fresh_db,
    run_into, scalar_i64, table_rows,
};
use gpu_health::config::SourceConfig;
use tokio::sync::OnceCell;

/// The fixture backfilled as it is, into a database of its own: its URL and report.
async fn reference() -> &'static (String, gpu_health::RunReport) {
    static REFERENCE: OnceCell<(String, gpu_health::RunReport)> = OnceCell::const_new();
    REFERENCE
        .get_or_init(|| async {
            let (url, _) = fresh_db("t_poison_reference").await;
            let report = backfill(&url, None).await;
            (url, report)
        })
        .await
}

/// The fixture rewritten one partition after another (highest first).
fn partition_ordered_dump() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = std::fs::File::open(root.join(common::FIXTURE)).unwrap();
    let reader = std::io::BufReader::new(zstd::stream::read::Decoder::new(file).unwrap());
    let mut by_partition: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
    for line in reader.lines() {
        let line = line.unwrap();
        let rec: serde_json::Value = serde_json::from_str(&line).unwrap();
        let p = rec["partition"].as_i64().unwrap_or(0);
        by_partition.entry(p).or_default().push(line);
    }
    assert!(by_partition.len() > 1, "the fixture has one partition");
    let path =
        std::env::temp_dir().join(format!("gpu-health-ordered-{}.jsonl", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for lines in by_partition.values().rev() {
        for l in lines {
            writeln!(out, "{l}").unwrap();
        }
    }
    out.flush().unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dump_written_partition_by_partition_gives_the_interleaved_tables() {
    require_services!(a_dump_written_partition_by_partition_gives_the_interleaved_tables: "DATABASE_URL");
    let (url_a, interleaved) = reference().await;
    let a = gpu_health::db::connect(url_a).await.unwrap();
    let (url_b, b) = fresh_db("t_order_partitions").await;
    let mut cfg = fixture_pipeline("gpu-metrics-enriched");
    cfg.source = SourceConfig::File {
        path: partition_ordered_dump().display().to_string(),
        topic: "gpu-metrics-enriched".into(),
    };
    let ordered = run_into(&url_b, cfg).await;
    assert!(ordered.books_balance());
    assert_eq!(ordered.too_late, interleaved.too_late, "too_late");
    assert_eq!(ordered.rollup_1m_rows, interleaved.rollup_1m_rows);
    assert_eq!(ordered.score_rows, interleaved.score_rows);
    for (table, order) in CHECKSUM_TABLES {
        let (x, y) = if table == "gpu_metrics_dead_letters" {
            // The detail of a too_late letter names the watermark of its moment.
            let q = |c| async move {
                c_rows(
                    c,
                    &format!(
                        "SELECT reason, topic, partition, \"offset\", key, value, gpu_uuid, time
                                      FROM {table} ORDER BY {order}"
                    ),
                )
                .await
            };
            (q(&a).await, q(&b).await)
        } else {
            (
                table_rows(&a, table, order).await,
                table_rows(&b, table, order).await,
            )
        };
        assert!(!x.is_empty(), "{table} is empty");
        assert_rows_close(&y, &x, table);
    }
}

async fn c_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<serde_json::Value> {
    c.query(&format!("SELECT row_to_json(x) FROM ({sql}) x"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_the_database_refuses_are_dead_lettered_and_the_rest_stored() {
    require_services!(rows_the_database_refuses_are_dead_lettered_and_the_rest_stored: "DATABASE_URL");
    // What a DBA might add, and the processor knows nothing of: no reading at or
    // above 93 C in minute 7 of an hour (a few dozen rows, spread over three days).
    const REFUSED: &str = "gpu_temp >= 93 AND date_part('minute', time AT TIME ZONE 'UTC') = 7";
    const REFUSED_1M: &str =
        "gpu_temp_max >= 93 AND date_part('minute', time AT TIME ZONE 'UTC') = 7";
    let (url, mut c) = fresh_db("t_refused").await;
    apply_schema(&mut c).await.unwrap();
    c.batch_execute(&format!(
        "ALTER TABLE gpu_metrics ADD CONSTRAINT dba_check CHECK (NOT ({REFUSED}));
         ALTER TABLE gpu_metrics_1min ADD CONSTRAINT dba_check CHECK (NOT ({REFUSED_1M}));"
    ))
    .await
    .unwrap();
    // Which rows that refuses, from the run that knows no constraint.
    let (ref_url, _) = reference().await;
    let r = gpu_health::db::connect(ref_url).await.unwrap();
    let all_raw = scalar_i64(&r, "SELECT count(*) FROM gpu_metrics").await;
    let hot_raw = scalar_i64(
        &r,
        &format!("SELECT count(*) FROM gpu_metrics WHERE {REFUSED}"),
    )
    .await;
    let hot_minutes = scalar_i64(
        &r,
        &format!("SELECT count(*) FROM gpu_metrics_1min WHERE {REFUSED_1M}"),
    )
    .await;
    assert!(
        hot_raw > 0 && hot_minutes > 0,
        "the constraint refuses nothing"
    );

    let report = backfill(&url, None).await;
    assert!(report.books_balance(), "{report:?}");
    let stored = scalar_i64(&c, "SELECT count(*) FROM gpu_metrics").await;
    assert_eq!(stored, all_raw - hot_raw, "every other raw row is stored");
    let refused = |table: &str| {
        format!(
            "SELECT count(DISTINCT (gpu_uuid, time)) FROM gpu_metrics_dead_letters
              WHERE reason = 'db_rejected' AND topic = '{table}' AND detail LIKE '%SQLSTATE 23514%'"
        )
    };
    assert_eq!(scalar_i64(&c, &refused("gpu_metrics")).await, hot_raw);
    assert_eq!(
        scalar_i64(&c, &refused("gpu_metrics_1min")).await,
        hot_minutes
    );
    // A refused row's letter carries the row: it is one the constraint refuses.
    let other_letters = scalar_i64(
        &c,
        &format!(
            "SELECT count(*) FROM (
                SELECT g.* FROM gpu_metrics_dead_letters d,
                       jsonb_populate_record(NULL::gpu_metrics, convert_from(d.value, 'UTF8')::jsonb) g
                 WHERE d.reason = 'db_rejected' AND d.topic = 'gpu_metrics') x
              WHERE NOT ({REFUSED})"
        ),
    )
    .await;
    assert_eq!(other_letters, 0);
    // The rest of the tables are whole: 15-minute rollups have no constraint.
    let want_15m = scalar_i64(&r, "SELECT count(*) FROM gpu_metrics_15min").await;
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM gpu_metrics_15min").await,
        want_15m
    );
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM gpu_health_scores").await,
        48
    );
    // A replay stores each refused row's letter once.
    backfill(&url, None).await;
    assert_eq!(scalar_i64(&c, &refused("gpu_metrics")).await, hot_raw);
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM gpu_metrics_dead_letters WHERE reason = 'db_rejected' AND topic = 'gpu_metrics'").await,
        hot_raw
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_refresh_after_a_stored_flush_is_counted_not_fatal() {
    require_services!(a_failing_refresh_after_a_stored_flush_is_counted_not_fatal: "DATABASE_URL");
    let (url, mut c) = fresh_db("t_maintenance").await;
    apply_schema(&mut c).await.unwrap();
    if gpu_health::db::edition(&c).await.unwrap() != gpu_health::db::Edition::Apache {
        eprintln!("skipped: the processor refreshes aggregates on the Apache edition only");
        return;
    }
    c.batch_execute(
        "ALTER FUNCTION gpu_health.refresh_aggregates() RENAME TO refresh_aggregates_away",
    )
    .await
    .unwrap();
    let report = backfill(&url, None).await;
    assert!(report.maintenance_failures >= 1, "{report:?}");
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM gpu_metrics").await as u64,
        report.raw_rows
    );
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM gpu_health_scores").await,
        48
    );
}
