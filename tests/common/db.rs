//! Shared by the database tests: a fresh database per test on the server named by
//! DATABASE_URL, the fixture backfilled into it, and per-table content checksums.

use std::path::Path;

use gpu_health::config::{DEMO_PIPELINE, PipelineConfig, SinkConfig, SourceConfig};
use gpu_health::db;
use tokio_postgres::Client;

pub fn server_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with scripts/test.sh, which starts TimescaleDB",
    )
}

pub fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("a database URL ends in /<database>");
    format!("{base}/{db}")
}

/// A fresh database with the extension, for one test.
pub async fn fresh_db(name: &str) -> (String, Client) {
    fresh_db_at(&server_url(), name).await
}

/// A fresh database with the extension on the server at `server`.
pub async fn fresh_db_at(server: &str, name: &str) -> (String, Client) {
    let admin = db::connect(server).await.unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = with_db(server, name);
    let client = db::connect(&url).await.unwrap();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .await
        .unwrap();
    (url, client)
}

/// Roles are cluster-wide: tests apply their schemas one at a time.
pub async fn apply_schema(c: &mut Client) -> anyhow::Result<db::migrate::ApplyReport> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _guard = LOCK.lock().await;
    Ok(db::migrate::apply(c).await?)
}

pub async fn scalar_i64(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The fixture into the database at `url` (schema applied first); `batch_size`
/// overrides the demo pipeline's.
pub async fn backfill(url: &str, batch_size: Option<usize>) -> gpu_health::RunReport {
    let mut cfg = fixture_pipeline("gpu-metrics-enriched");
    if let Some(n) = batch_size {
        cfg.engine.batch_size = n;
    }
    run_into(url, cfg).await
}

/// The demo pipeline reading the fixture file as topic `topic`.
pub fn fixture_pipeline(topic: &str) -> PipelineConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cfg = PipelineConfig::parse(DEMO_PIPELINE, "demo.toml").unwrap();
    cfg.source = SourceConfig::File {
        path: root.join(super::FIXTURE).display().to_string(),
        topic: topic.into(),
    };
    cfg
}

/// Runs `cfg`'s source into the database at `url` (schema applied first), consumer
/// group `test`, with the offsets stored there.
pub async fn run_into(url: &str, mut cfg: PipelineConfig) -> gpu_health::RunReport {
    apply_schema(&mut db::connect(url).await.unwrap())
        .await
        .unwrap();
    cfg.sink = SinkConfig::Timescale {
        consumer_group: Some("test".into()),
        apply_schema: false,
        refresh_interval: std::time::Duration::from_secs(3600),
        retention_interval: std::time::Duration::from_secs(3600),
        max_backoff: std::time::Duration::from_secs(1),
    };
    gpu_health::run_pipeline_with_database(cfg, url)
        .await
        .unwrap()
}

pub const CHECKSUM_TABLES: [(&str, &str); 7] = [
    ("gpu_metrics", "time, gpu_uuid"),
    ("gpu_metrics_1min", "time, gpu_uuid"),
    ("gpu_metrics_15min", "time, gpu_uuid"),
    ("gpu_health_scores", "time, gpu_uuid"),
    ("gpu_failure_predictions", "time, gpu_uuid, model_name"),
    ("gpu_assets", "gpu_uuid"),
    (
        "gpu_metrics_dead_letters",
        "topic, partition, \"offset\", reason",
    ),
];

pub async fn checksums(c: &Client) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for (t, order) in CHECKSUM_TABLES {
        let cols = if t == "gpu_metrics_dead_letters" {
            "reason, detail, topic, partition, \"offset\", key, value, gpu_uuid, time"
        } else {
            "x.*"
        };
        let row = c
            .query_one(
                &format!("SELECT count(*), md5(coalesce(string_agg(({cols})::text, '|' ORDER BY {order}), '')) FROM {t} x"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("checksum of {t}: {e}"));
        out.push((row.get(0), row.get(1)));
    }
    out
}

/// Every row of `table` as JSON, in `order`.
pub async fn table_rows(c: &Client, table: &str, order: &str) -> Vec<serde_json::Value> {
    c.query(
        &format!("SELECT row_to_json(x) FROM {table} x ORDER BY {order}"),
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("reading {table}: {e}"))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Equal rows, numbers to a relative 1e-9 (DESIGN 3: floating-point tolerance only;
/// partial aggregates merged in another order differ in the last bits).
pub fn assert_rows_close(a: &[serde_json::Value], b: &[serde_json::Value], table: &str) {
    assert_eq!(a.len(), b.len(), "{table}: row counts");
    for (x, y) in a.iter().zip(b) {
        let (Some(x), Some(y)) = (x.as_object(), y.as_object()) else {
            panic!("{table}: not rows");
        };
        assert_eq!(x.len(), y.len(), "{table}: columns");
        for (k, v) in x {
            let w = &y[k];
            let same = match (v.as_f64(), w.as_f64()) {
                (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
                _ => v == w,
            };
            assert!(same, "{table}: {k} differs: {v} vs {w} in {x:?}");
        }
    }
}
