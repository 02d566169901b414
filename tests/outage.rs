//! A database outage mid-stream (DESIGN 4): while TimescaleDB is down for 30 s the
//! processor pauses its input and retries with capped backoff; once it is back, the run
//! finishes and every table equals an uninterrupted run's. Once with the file source and
//! once reading the fixture from Kafka (Tansu, KAFKA_BROKERS). These tests stop a
//! server, so each starts a private cluster of its own with `scripts/timescaledb.sh`.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::db::{
    CHECKSUM_TABLES, apply_schema, assert_rows_close, checksums, fixture_pipeline, fresh_db_at,
    run_into, scalar_i64, table_rows,
};
use gpu_health::config::SourceConfig;
use gpu_health::db;
use gpu_health::replay::{ReplayOptions, replay};

const OUTAGE: Duration = Duration::from_secs(30);
/// Small batches: many flushes, so the outage falls between the first and the last.
const BATCH: usize = 8192;

/// A cluster of this test's own; stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
    url: String,
}

fn script(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/timescaledb.sh"))
        .args(args)
        .output()
        .expect("running scripts/timescaledb.sh");
    assert!(
        out.status.success(),
        "scripts/timescaledb.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster {
    fn start(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("gpu-health-outage-{name}-{}", std::process::id()));
        let out = script(&["start", &dir.display().to_string()]);
        let url = out
            .lines()
            .find_map(|l| l.strip_prefix("DATABASE_URL="))
            .expect("the script prints DATABASE_URL=")
            .to_owned();
        Cluster { dir, url }
    }

    fn cmd(&self, action: &str) {
        script(&[action, &self.dir.display().to_string()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.cmd("stop");
    }
}

async fn next_offsets(url: &str) -> i64 {
    let c = db::connect(url).await.unwrap();
    scalar_i64(
        &c,
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM gpu_health.consumed_offsets",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_pauses_input_and_loses_nothing() {
    require_services!(database_outage_pauses_input_and_loses_nothing: "DATABASE_URL");
    outage(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_pauses_kafka_input_and_loses_nothing() {
    require_services!(database_outage_pauses_kafka_input_and_loses_nothing: "DATABASE_URL", "KAFKA_BROKERS");
    let brokers = std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests with scripts/test.sh, which starts a broker",
    );
    let topic = format!("gpu-metrics-outage-{}", std::process::id());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    replay(&ReplayOptions {
        dump: root.join(common::FIXTURE).display().to_string(),
        brokers: brokers.clone(),
        topic: topic.clone(),
        partitions: 4,
        rate: None,
        // A paused partition is fetched again from inside a batch, which Tansu 0.6
        // cannot do (it returns the next batch); one record per batch avoids it.
        batch_records: Some(1),
        properties: Vec::new(),
    })
    .await
    .unwrap();
    outage(Some((brokers, topic))).await;
}

/// The fixture (from the file, or from `kafka`: brokers and topic) into a database that
/// stops for 30 s after four flushes; the tables equal the file run's.
async fn outage(kafka: Option<(String, String)>) {
    let cluster = Cluster::start(if kafka.is_some() { "kafka" } else { "file" });
    let (ref_url, mut ref_c) = fresh_db_at(&cluster.url, "t_reference").await;
    let (url, mut c) = fresh_db_at(&cluster.url, "t_outage").await;
    apply_schema(&mut ref_c).await.unwrap();
    apply_schema(&mut c).await.unwrap();

    let topic = kafka
        .as_ref()
        .map_or("gpu-metrics-enriched", |(_, t)| t.as_str());
    let mut file = fixture_pipeline(topic);
    file.engine.batch_size = BATCH;
    let reference = run_into(&ref_url, file.clone()).await;
    let total = reference.messages as i64;
    // Read before the outage: the server stops, and this connection with it.
    let want = checksums(&ref_c).await;
    let mut want_rows = Vec::new();
    for (table, order) in CHECKSUM_TABLES {
        want_rows.push(if table.starts_with("gpu_metrics_1") {
            table_rows(&ref_c, table, order).await
        } else {
            Vec::new()
        });
    }
    drop(ref_c);

    let mut cfg = file;
    if let Some((brokers, topic)) = &kafka {
        cfg.source = SourceConfig::Kafka {
            brokers: brokers.clone(),
            topic: topic.clone(),
            group: Some(format!("outage-{}", std::process::id())),
            bounded: true,
            end_linger: Duration::from_secs(2),
            properties: Default::default(),
            start_at: None,
        };
    }
    let run = tokio::spawn({
        let url = url.clone();
        async move { run_into(&url, cfg).await }
    });
    // Stop the server once some flushes have committed, well before the end.
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_stop = loop {
        let n = next_offsets(&url).await;
        if n >= 4 * BATCH as i64 {
            break n;
        }
        assert!(!run.is_finished(), "the run ended before the outage began");
        assert!(Instant::now() < deadline, "no flush committed within 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        at_stop < total / 2,
        "stopped too late: {at_stop} of {total}"
    );
    drop(c);
    cluster.cmd("pause");
    tokio::time::sleep(OUTAGE).await;
    assert!(
        !run.is_finished(),
        "the run finished while the database was down"
    );
    cluster.cmd("resume");
    // Once seen (issue 13's full run, both outage tests side by side): the Kafka run
    // stopped at 52,193 of 399,635 messages after the database came back, with its
    // new connection idle. A guard against that hang, not a speed check: fail with
    // what we know instead of holding the suite for ever.
    let report = tokio::time::timeout(Duration::from_secs(1800), run)
        .await
        .expect("the run did not finish within 30 minutes of the database's return")
        .expect("the run panicked");
    assert!(report.pauses > 0, "the source was never paused");

    assert!(report.books_balance());
    assert_eq!(report.messages, reference.messages);
    let c = db::connect(&url).await.unwrap();
    assert_eq!(
        next_offsets(&url).await,
        total,
        "offsets of the whole input"
    );
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM gpu_metrics").await as u64,
        reference.raw_rows
    );
    // Raw rows, scores, predictions, assets and dead letters are exact; read from
    // Kafka, rollups merge their partials in arrival order, so to floating-point
    // tolerance.
    let got = checksums(&c).await;
    for (i, (table, order)) in CHECKSUM_TABLES.iter().enumerate() {
        if kafka.is_some() && table.starts_with("gpu_metrics_1") {
            let a = table_rows(&c, table, order).await;
            assert_rows_close(&a, &want_rows[i], table);
        } else {
            assert_eq!(
                got[i], want[i],
                "{table} differs from the uninterrupted run"
            );
        }
    }
}
