//! A database outage mid-stream (DESIGN 4): while TimescaleDB is down for 30 s the
//! processor pauses its input and retries with capped backoff; once it is back, the run
//! finishes and every table equals an uninterrupted run's. This test stops a server, so
//! it starts a private cluster of its own with `scripts/timescaledb.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::db::{apply_schema, backfill, checksums, fresh_db_at, scalar_i64};
use gpu_health::db;

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
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("gpu-health-outage-{}", std::process::id()));
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
    let cluster = Cluster::start();
    let (ref_url, mut ref_c) = fresh_db_at(&cluster.url, "t_reference").await;
    let (url, mut c) = fresh_db_at(&cluster.url, "t_outage").await;
    apply_schema(&mut ref_c).await.unwrap();
    apply_schema(&mut c).await.unwrap();

    let reference = backfill(&ref_url, Some(BATCH)).await;
    let total = reference.messages as i64;
    let expected = checksums(&ref_c).await;
    drop(ref_c);

    let run = tokio::spawn({
        let url = url.clone();
        async move { backfill(&url, Some(BATCH)).await }
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
    let report = run.await.expect("the run panicked");

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
    assert_eq!(
        checksums(&c).await,
        expected,
        "a table differs from the uninterrupted run"
    );
}
