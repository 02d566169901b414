//! Kafka end to end (DESIGN 4, 8) with a real broker (Tansu, started by scripts/test.sh;
//! KAFKA_BROKERS) and the real TimescaleDB. The fixture is replayed into one topic; the
//! file-source run of the same fixture is the reference every test compares with:
//! - consumed by the processor, the topic gives the same tables;
//! - the processor SIGKILLed at random moments and restarted each time gives them too;
//! - two processors in one consumer group split the partitions, one is stopped
//!   (SIGTERM: it stores its state and leaves the group), the other takes its
//!   partitions over from its checkpoints and finishes: the same tables again;
//! - a bounded run with a start time reads exactly what was produced after it.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::db::{
    CHECKSUM_TABLES, apply_schema, assert_rows_close, checksums, fixture_pipeline, fresh_db,
    run_into, scalar_i64, table_rows,
};
use std::collections::HashMap;

use gpu_health::config::{SourceConfig, TopicsSection};
use gpu_health::replay::{ReplayOptions, replay};
use rand::{Rng, SeedableRng};
use tokio::sync::OnceCell;
use tokio_postgres::Client;

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests with scripts/test.sh, which starts a broker",
    )
}

/// A bounded Kafka source on `topic` (end linger 2 s), from `start_at` if given.
fn bounded_source(topic: &str, start_at: Option<String>) -> SourceConfig {
    SourceConfig::Kafka {
        brokers: brokers(),
        topic: topic.to_owned(),
        group: None,
        bounded: true,
        end_linger: Duration::from_secs(2),
        properties: Default::default(),
        start_at,
    }
}

const OFFSETS: &str = "SELECT md5(string_agg(topic || '/' || partition || '=' || next_offset, ',' ORDER BY topic, partition))
                         FROM gpu_health.consumed_offsets";

/// The fixture in a topic, and the file-source run of it in a database of its own.
struct Reference {
    topic: String,
    produced: u64,
    url: String,
}

async fn reference() -> &'static Reference {
    static REFERENCE: OnceCell<Reference> = OnceCell::const_new();
    REFERENCE
        .get_or_init(|| async {
            let topic = format!("gpu-metrics-e2e-{}", std::process::id());
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let produced = replay(&ReplayOptions {
                dump: root.join(common::FIXTURE).display().to_string(),
                brokers: brokers(),
                topic: topic.clone(),
                partitions: 4,
                rate: None,
                // Tansu 0.6 cannot fetch from inside a batch: a restart must be able to
                // seek to any offset.
                batch_records: Some(1),
                properties: Vec::new(),
            })
            .await
            .unwrap();
            let (url, _) = fresh_db("t_kafka_reference").await;
            let report = run_into(&url, fixture_pipeline(&topic)).await;
            assert_eq!(produced, report.messages);
            Reference {
                topic,
                produced,
                url,
            }
        })
        .await
}

/// Every table equals the reference's: raw rows, scores, predictions, assets and dead
/// letters exactly; rollups merge their partials in arrival order, so they are equal
/// to floating-point tolerance. The consumed offsets cover the whole topic.
async fn assert_same_tables(c: &Client, r: &Reference) {
    let ref_c = gpu_health::db::connect(&r.url).await.unwrap();
    let (got, want) = (checksums(c).await, checksums(&ref_c).await);
    for (i, (table, order)) in CHECKSUM_TABLES.iter().enumerate() {
        if table.starts_with("gpu_metrics_1") {
            let a = table_rows(c, table, order).await;
            let b = table_rows(&ref_c, table, order).await;
            assert_rows_close(&a, &b, table);
        } else {
            assert_eq!(got[i], want[i], "{table}");
        }
    }
    let stored: String = c.query_one(OFFSETS, &[]).await.unwrap().get(0);
    let expected: String = ref_c.query_one(OFFSETS, &[]).await.unwrap().get(0);
    assert_eq!(
        stored, expected,
        "consumed offsets differ from the file run's"
    );
    assert_eq!(
        scalar_i64(
            c,
            "SELECT sum(next_offset)::bigint FROM gpu_health.consumed_offsets"
        )
        .await as u64,
        r.produced
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fixture_through_kafka_equals_the_file_run() {
    require_services!(fixture_through_kafka_equals_the_file_run: "DATABASE_URL", "KAFKA_BROKERS");
    let r = reference().await;
    let topic = r.topic.clone();
    let (url, c) = fresh_db("t_kafka").await;
    let mut cfg = fixture_pipeline(&topic);
    cfg.source = bounded_source(&topic, None);
    let outputs = output_topics(&topic);
    cfg.topics = Some(outputs.clone());
    let report = run_into(&url, cfg).await;
    assert!(report.books_balance());
    assert_eq!(report.messages, r.produced);
    assert_same_tables(&c, r).await;
    assert!(report.checkpoints_written >= 4);
    assert!(report.topic_messages > 0);

    // The output topics: the last message of every rollup key is the table's row, and
    // every dead letter is on the DLQ with its original bytes and reason headers.
    for (out, table) in [
        (&outputs.rollup_1m, "gpu_metrics_1min"),
        (&outputs.rollup_15m, "gpu_metrics_15min"),
    ] {
        let mut last: HashMap<(String, i64), serde_json::Map<String, serde_json::Value>> =
            HashMap::new();
        for m in consume_all(out) {
            let row: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&m.value).unwrap();
            let gpu = row["gpu_uuid"].as_str().unwrap().to_owned();
            assert_eq!(
                m.key.as_deref(),
                Some(gpu.as_bytes()),
                "{out}: keyed by GPU"
            );
            last.insert((gpu, micros(&row["time"])), row);
        }
        let rows = table_rows(&c, table, "time, gpu_uuid").await;
        assert_eq!(last.len(), rows.len(), "{out}: one key per row of {table}");
        for db in rows {
            let db = db.as_object().unwrap();
            let key = (
                db["gpu_uuid"].as_str().unwrap().to_owned(),
                micros(&db["time"]),
            );
            let msg = last
                .get(&key)
                .unwrap_or_else(|| panic!("{out}: no {key:?}"));
            for (k, v) in msg.iter().filter(|(k, _)| *k != "time") {
                let w = &db[k];
                let same = match (v.as_f64(), w.as_f64()) {
                    (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
                    _ => v == w,
                };
                assert!(same, "{out}: {k} is {v}, the table has {w}");
            }
        }
    }
    let letters = c
        .query(
            "SELECT reason, partition, \"offset\", value FROM gpu_metrics_dead_letters",
            &[],
        )
        .await
        .unwrap();
    let mut want: HashMap<(String, i32, i64), Vec<u8>> = letters
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
        .collect();
    let dlq = consume_all(&outputs.dead_letters);
    assert_eq!(dlq.len(), want.len(), "one DLQ message per dead letter");
    for m in dlq {
        let h = |k: &str| m.headers.get(k).cloned().unwrap_or_default();
        assert_eq!(h("source.topic"), topic);
        assert!(!h("error.detail").is_empty());
        let key = (
            h("error.reason"),
            h("source.partition").parse().unwrap(),
            h("source.offset").parse().unwrap(),
        );
        let value = want
            .remove(&key)
            .unwrap_or_else(|| panic!("no dead letter {key:?}"));
        if h("error.truncated") == "true" {
            // Over the brokers' limit: the head of the bytes, the whole one's size and hash.
            use sha2::{Digest, Sha256};
            let hash: String = Sha256::digest(&value)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(h("original.size"), value.len().to_string(), "{key:?}");
            assert_eq!(h("original.sha256"), hash, "{key:?}");
            assert!(
                m.value.len() < 1_000_000,
                "{key:?}: {} bytes",
                m.value.len()
            );
            assert!(
                value.starts_with(&m.value),
                "{key:?}: not the original's head"
            );
        } else {
            assert!(m.value == value, "{key:?}: not the original bytes");
        }
    }

    // A second run of the same group starts at the stored offsets: nothing is re-read.
    let mut cfg = fixture_pipeline(&topic);
    cfg.source = SourceConfig::Kafka {
        brokers: brokers(),
        topic,
        group: None,
        bounded: true,
        end_linger: Duration::from_secs(2),
        properties: Default::default(),
        start_at: None,
    };
    let again = run_into(&url, cfg).await;
    assert_eq!(again.messages, 0, "a restart re-read stored input");
    assert_eq!(again.partitions_restored, 4);
    // It went on from the stored state: the tables are unchanged.
    assert_same_tables(&c, r).await;
}

/// Output topics named after `base`, with the default message limit.
fn output_topics(base: &str) -> TopicsSection {
    TopicsSection {
        brokers: brokers(),
        rollup_1m: format!("{base}-1min"),
        rollup_15m: format!("{base}-15min"),
        dead_letters: format!("{base}-dlq"),
        max_message_bytes: 1_000_000,
        replication_factor: None,
        properties: Default::default(),
    }
}

/// A consumed message: key, value and headers.
struct Consumed {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: HashMap<String, String>,
}

/// Every message of `topic`, in partition order, read until it has been quiet for 3 s.
fn consume_all(topic: &str) -> Vec<Consumed> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("check-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                let v = x.value.map(|v| String::from_utf8_lossy(v).into_owned());
                                (x.key.to_owned(), v.unwrap_or_default())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Consumed {
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
                quiet = Instant::now();
            }
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// A JSON timestamp (RFC 3339) in microseconds.
fn micros(v: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_micros()
}

/// A pipeline file for the processor binary: the reference topic into TimescaleDB as
/// consumer group `group`, in small batches with frequent checkpoints (many flushes
/// for a kill to fall between), dead members noticed after 6 s.
fn processor_config(r: &Reference, group: &str, end_linger: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("gpu-health-{group}.toml"));
    let text = format!(
        r#"name = "{group}"
[source]
kind = "kafka"
brokers = "{brokers}"
topic = "{topic}"
bounded = true
end_linger = "{end_linger}"
[source.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
[sink]
kind = "timescale"
apply_schema = false
refresh_interval = "1h"
max_backoff = "1s"
[window]
allowed_lateness = "60s"
late_horizon = "10m"
idle_timeout = "30s"
[health]
sample_interval = "10s"
[engine]
batch_size = 8192
checkpoint_interval = "300ms"
"#,
        brokers = brokers(),
        topic = r.topic,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The processor binary on `config`, logging at info level into `log`.
fn spawn_processor(config: &Path, url: &str, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_gpu-health"))
        .args(["run", "--config"])
        .arg(config)
        .env("DATABASE_URL", url)
        .env(
            "GPU_HEALTH_LOG",
            "gpu_health=info,gpu_health::pipeline=debug",
        )
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting gpu-health")
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("gpu-health did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `log` has a line containing `text`.
fn wait_for_line(log: &Path, text: &str, limit: Duration) {
    let start = Instant::now();
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            start.elapsed() < limit,
            "no '{text}' in {} within {limit:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn seed() -> u64 {
    let seed = std::env::var("GPU_HEALTH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("random moments from seed {seed} (GPU_HEALTH_TEST_SEED to repeat)");
    seed
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_leaves_the_uninterrupted_tables() {
    require_services!(sigkill_at_random_moments_leaves_the_uninterrupted_tables: "DATABASE_URL", "KAFKA_BROKERS");
    let r = reference().await;
    let (url, mut c) = fresh_db("t_kafka_kill").await;
    apply_schema(&mut c).await.unwrap();
    let group = format!("kill-{}", std::process::id());
    let config = processor_config(r, &group, "2s");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed());
    let logs = std::env::temp_dir().join(&group);
    std::fs::create_dir_all(&logs).unwrap();
    let (mut kills, mut runs) = (0, 0);
    while kills < 6 {
        runs += 1;
        assert!(runs < 40, "only {kills} kills landed in {runs} runs");
        let log = logs.join(format!("run-{runs}.log"));
        let mut child = spawn_processor(&config, &url, &log);
        // A restart waits for the group to drop the killed member (session timeout)
        // before it is assigned; the moment counts from the assignment. The whole
        // topic takes 10 to 30 s to process here (one record per batch, see `reference`).
        wait_for_line(&log, "partitions assigned", Duration::from_secs(120));
        // The first kill only once a checkpoint is stored, however slow this machine
        // is: then every restart has state to go on from.
        let deadline = Instant::now() + Duration::from_secs(300);
        while scalar_i64(&c, "SELECT count(*) FROM gpu_health.engine_checkpoints").await == 0
            && child.try_wait().unwrap().is_none()
        {
            assert!(
                Instant::now() < deadline,
                "no checkpoint stored in run {runs}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let moment = Duration::from_millis(rng.random_range(800..4000));
        std::thread::sleep(moment);
        if let Some(status) = child.try_wait().unwrap() {
            // It reached the end first; later kills land in restarts that find the
            // input consumed (restore, end linger, final flush).
            assert!(status.success(), "run {runs} failed; see {}", log.display());
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        eprintln!("run {runs}: SIGKILL {moment:?} after the assignment");
    }
    let log = logs.join("final.log");
    let mut child = spawn_processor(&config, &url, &log);
    let status = wait_exit(&mut child, Duration::from_secs(180));
    assert!(
        status.success(),
        "the final run failed; see {}",
        log.display()
    );
    // Restarts went on from stored state, not only from the beginning.
    let restored = (1..=runs)
        .map(|i| logs.join(format!("run-{i}.log")))
        .chain([log])
        .filter(|l| {
            std::fs::read_to_string(l)
                .unwrap_or_default()
                .contains("engine state restored from checkpoints")
        })
        .count();
    assert!(restored >= 3, "only {restored} runs restored a checkpoint");
    let final_log = std::fs::read_to_string(logs.join("final.log")).unwrap();
    assert!(
        final_log.contains("backfill progress"),
        "a bounded run logs its progress"
    );
    assert_same_tables(&c, r).await;
}

/// The partitions of `topic` in each "partitions assigned" line of `log`, in order.
fn assignments(log: &Path, topic: &str) -> Vec<usize> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("partitions assigned"))
        .map(|l| l.matches(topic).count())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processors_split_the_partitions_and_one_takes_over_from_the_other() {
    require_services!(two_processors_split_the_partitions_and_one_takes_over_from_the_other: "DATABASE_URL", "KAFKA_BROKERS");
    let r = reference().await;
    let (url, mut c) = fresh_db("t_kafka_pair").await;
    apply_schema(&mut c).await.unwrap();
    let group = format!("pair-{}", std::process::id());
    // B waits 15 s at the end of its partitions: long enough to be handed A's.
    let config = processor_config(r, &group, "15s");
    let logs = std::env::temp_dir().join(&group);
    std::fs::create_dir_all(&logs).unwrap();
    let (log_a, log_b) = (logs.join("a.log"), logs.join("b.log"));
    let mut a = spawn_processor(&config, &url, &log_a);
    wait_for_line(&log_a, "partitions assigned", Duration::from_secs(60));
    let mut b = spawn_processor(&config, &url, &log_b);
    wait_for_line(&log_b, "partitions assigned", Duration::from_secs(60));
    let split = assignments(&log_b, &r.topic)[0];
    assert!(
        (1..4).contains(&split),
        "B was assigned {split} of 4 partitions on joining"
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed());
    std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
    // SIGTERM: A stores its state and leaves the group, and B is given A's partitions
    // at once. (A SIGKILLed member is what the restart test covers; Tansu 0.6 keeps a
    // dead member in the group's assignment after its session times out, so B would
    // never be given its partitions.)
    let term = Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = wait_exit(&mut a, Duration::from_secs(60));
    assert!(
        status.success(),
        "A failed to stop; see {}",
        log_a.display()
    );
    let status = wait_exit(&mut b, Duration::from_secs(180));
    assert!(status.success(), "B failed; see {}", log_b.display());
    assert_eq!(
        assignments(&log_b, &r.topic).last().copied(),
        Some(4),
        "B did not take A's partitions over; see {}",
        log_b.display()
    );
    assert_same_tables(&c, r).await;
}

/// `source.start_at`: a bounded run from a time reads what was produced from then on
/// (offsets for times), and nothing before it.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_time_reads_only_what_came_after_it() {
    require_services!(a_start_time_reads_only_what_came_after_it: "DATABASE_URL", "KAFKA_BROKERS");
    use std::io::{BufRead, Write};
    let topic = format!("gpu-metrics-start-at-{}", std::process::id());
    let dir = std::env::temp_dir().join(&topic);
    std::fs::create_dir_all(&dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The fixture's first 3,000 messages in two dumps: 1,200 before the time, 1,800 after.
    let lines: Vec<String> = gpu_health::dump::open_dump(&root.join(common::FIXTURE))
        .unwrap()
        .lines()
        .take(3000)
        .map(Result::unwrap)
        .collect();
    let (before, after) = lines.split_at(1200);
    let mut produce = Vec::new();
    for (name, part) in [("before.jsonl", before), ("after.jsonl", after)] {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        for l in part {
            writeln!(f, "{l}").unwrap();
        }
        produce.push(path);
    }
    let send = |dump: &Path| ReplayOptions {
        dump: dump.display().to_string(),
        brokers: brokers(),
        topic: topic.clone(),
        partitions: 4,
        rate: None,
        batch_records: None,
        properties: Vec::new(),
    };
    replay(&send(&produce[0])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replay(&send(&produce[1])).await.unwrap();

    let (url, c) = fresh_db("t_kafka_start_at").await;
    let mut cfg = fixture_pipeline(&topic);
    cfg.source = bounded_source(&topic, Some(at.to_rfc3339()));
    let report = run_into(&url, cfg).await;
    assert!(report.books_balance());
    assert_eq!(
        report.messages,
        after.len() as u64,
        "messages read from {at}"
    );
    // Every partition was read from its first message after the time to its end.
    let mut per_partition: HashMap<i32, i64> = HashMap::new();
    for l in &lines {
        let r: gpu_health::dump::DumpRecord = serde_json::from_str(l).unwrap();
        *per_partition.entry(r.partition).or_default() += 1;
    }
    for (p, total) in per_partition {
        let stored = scalar_i64(
            &c,
            &format!(
                "SELECT next_offset FROM gpu_health.consumed_offsets \
                 WHERE topic = '{topic}' AND partition = {p}"
            ),
        )
        .await;
        assert_eq!(stored, total, "partition {p}: next offset stored");
    }
}

/// The Prometheus endpoint over HTTP: name{labels} -> value of every sample line.
fn scrape(addr: &str) -> HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connecting to /metrics");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no {key} in the scrape: {:?}", m.keys().collect::<Vec<_>>()))
}

/// The scrape endpoint of a running processor: the counters move between two scrapes,
/// the gauges describe the run (16 GPUs, a watermark about a month behind the wall
/// clock, lag per partition), the summaries carry quantiles, and the rows counted as
/// written are never more than the database holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_during_a_run_sees_the_figures_move() {
    require_services!(a_scrape_during_a_run_sees_the_figures_move: "DATABASE_URL", "KAFKA_BROKERS");
    let r = reference().await;
    let (url, mut c) = fresh_db("t_kafka_metrics").await;
    apply_schema(&mut c).await.unwrap();
    let group = format!("metrics-{}", std::process::id());
    let config = processor_config(r, &group, "2s");
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "\"heartbeat.interval.ms\" = \"1000\"",
        "\"heartbeat.interval.ms\" = \"1000\"\n\"statistics.interval.ms\" = \"300\"",
    ) + &format!("[metrics]\nlisten = \"{addr}\"\n");
    std::fs::write(&config, text).unwrap();
    let log = std::env::temp_dir().join(format!("{group}.log"));
    let mut child = spawn_processor(&config, &url, &log);
    wait_for_line(&log, "partitions assigned", Duration::from_secs(60));
    let events = format!("gpu_health_events_in_total{{topic=\"{}\"}}", r.topic);
    let raw = "gpu_health_rows_written_total{table=\"gpu_metrics\"}";
    let moving = [
        events.as_str(),
        raw,
        "gpu_health_e2e_latency_seconds_count",
        "gpu_health_flush_latency_seconds_count",
        "gpu_health_batch_messages_count",
    ];
    // Scrapes wait on what they observe, never on a guess of this machine's speed: the
    // first once a flush is stored, the second once every counter moved past it and
    // every GPU was seen.
    let deadline = Instant::now() + Duration::from_secs(300);
    let scrape_when = |done: &dyn Fn(&HashMap<String, f64>) -> bool| loop {
        let m = scrape(&addr);
        if done(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "the scrape never got there: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let first = scrape_when(&|m| moving.iter().all(|k| m.get(*k).is_some_and(|v| *v > 0.0)));
    let second = scrape_when(&|m| {
        moving.iter().all(|k| m.get(*k) > first.get(*k)) && m.get("gpu_health_gpus") == Some(&16.0)
    });
    let stored = scalar_i64(&c, "SELECT count(*) FROM gpu_metrics").await as f64;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the second scrape; see {}",
        log.display()
    );

    for key in moving {
        assert!(
            sample(&second, key) > sample(&first, key),
            "{key} did not move: {} then {}",
            sample(&first, key),
            sample(&second, key)
        );
    }
    // Counted after the commit, so never ahead of the table.
    assert!(
        sample(&second, raw) <= stored,
        "{} > {stored}",
        sample(&second, raw)
    );
    assert!(sample(&second, raw) <= sample(&second, &events));
    assert_eq!(sample(&second, "gpu_health_gpus"), 16.0);
    assert!(sample(&second, "gpu_health_open_windows{width=\"1m\"}") > 0.0);
    assert!(sample(&second, "gpu_health_state_bytes") > 0.0);
    // The fixture's samples are from 2026-11-01..03: the watermark is days behind.
    assert!(sample(&second, "gpu_health_watermark_delay_seconds") > 86_400.0);
    let behind = sample(&second, "gpu_health_watermark_behind_newest_seconds");
    assert!(
        (60.0..86_400.0).contains(&behind),
        "watermark {behind} s behind the newest event"
    );
    for q in ["0.5", "0.99"] {
        let e2e = sample(
            &second,
            &format!("gpu_health_e2e_latency_seconds{{quantile=\"{q}\"}}"),
        );
        assert!(e2e > 0.0 && e2e < 3600.0, "e2e q{q} = {e2e}");
        let batch = sample(
            &second,
            &format!("gpu_health_batch_messages{{quantile=\"{q}\"}}"),
        );
        assert!((1.0..=8192.0).contains(&batch), "batch q{q} = {batch}");
    }
    // librdkafka's statistics come every 300 ms; a partition appears once fetched.
    let lag_key = |p: i32| {
        format!(
            "gpu_health_consumer_lag{{partition=\"{p}\",topic=\"{}\"}}",
            r.topic
        )
    };
    let mut latest = second.clone();
    let start = Instant::now();
    while (0..4).any(|p| !latest.contains_key(&lag_key(p)))
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(200));
        latest = scrape(&addr);
    }
    for p in 0..4 {
        assert!(sample(&latest, &lag_key(p)) >= 0.0);
    }
    assert!(sample(&second, "process_resident_memory_bytes") > 0.0);

    let status = wait_exit(&mut child, Duration::from_secs(180));
    assert!(status.success(), "see {}", log.display());
    assert_same_tables(&c, r).await;
}

/// A quiet fleet closes its windows (DESIGN 3, idle watermarks): samples stop coming,
/// and after the idle timeout the last minute's rollup is in the database, with the
/// values of its samples, and a checkpoint is stored. Without idleness the watermark
/// would stay a minute behind the newest sample and the last window would never close.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_fleet_closes_its_last_window() {
    require_services!(a_quiet_fleet_closes_its_last_window: "DATABASE_URL", "KAFKA_BROKERS");
    let (url, mut c) = fresh_db("t_kafka_idle").await;
    apply_schema(&mut c).await.unwrap();
    let group = format!("idle-{}", std::process::id());
    let topic = format!("gpu-metrics-idle-{}", std::process::id());
    // Two GPUs, one sample each 10 s for 3 minutes, starting on a minute 30 min ago.
    let now_s = chrono::Utc::now().timestamp();
    let t0 = (now_s - 1800) / 60 * 60;
    let gpus = [
        "GPU-1d1e0000-0000-0000-0000-000000000001",
        "GPU-1d1e0000-0000-0000-0000-000000000002",
    ];
    let temp = |g: usize, k: i64| 40.0 + g as f64 * 5.0 + (k % 7) as f64;
    let dump = std::env::temp_dir().join(format!("{topic}.jsonl"));
    let mut lines = String::new();
    for k in 0..18 {
        for (g, uuid) in gpus.iter().enumerate() {
            let value = serde_json::json!({
                "time": (t0 + k * 10) * 1000, "gpu_uuid": uuid, "hostname": "quiet-host",
                "gpu_temp": temp(g, k),
            });
            let rec = serde_json::json!({"key": uuid, "partition": 0, "value": value.to_string()});
            lines.push_str(&rec.to_string());
            lines.push('\n');
        }
    }
    std::fs::write(&dump, lines).unwrap();
    replay(&ReplayOptions {
        dump: dump.display().to_string(),
        brokers: brokers(),
        topic: topic.clone(),
        partitions: 1,
        rate: None,
        batch_records: None,
        properties: Vec::new(),
    })
    .await
    .unwrap();
    let config = std::env::temp_dir().join(format!("gpu-health-{group}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"name = "{group}"
[source]
kind = "kafka"
brokers = "{brokers}"
topic = "{topic}"
bounded = false
[sink]
kind = "timescale"
apply_schema = false
refresh_interval = "1h"
max_backoff = "1s"
[window]
allowed_lateness = "60s"
late_horizon = "10m"
idle_timeout = "10s"
[engine]
checkpoint_interval = "1s"
"#,
            brokers = brokers()
        ),
    )
    .unwrap();
    let log = std::env::temp_dir().join(format!("{group}.log"));
    let mut child = spawn_processor(&config, &url, &log);
    // The last window: [t0 + 2 min, t0 + 3 min), six samples per GPU.
    let last = t0 + 120;
    let query = format!(
        "SELECT count(*) FROM gpu_metrics_1min WHERE time = to_timestamp({last}) AND sample_count = 6"
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while scalar_i64(&c, &query).await < 2 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("gpu-health stopped ({status}); see {}", log.display());
        }
        assert!(
            Instant::now() < deadline,
            "the last minute was never written; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (g, uuid) in gpus.iter().enumerate() {
        let want: f64 = (12..18).map(|k| temp(g, k)).sum::<f64>() / 6.0;
        let got: f64 = c
            .query_one(
                "SELECT gpu_temp_avg FROM gpu_metrics_1min WHERE time = to_timestamp($1::float8) AND gpu_uuid = $2",
                &[&(last as f64), uuid],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            (got - want).abs() < 1e-9,
            "{uuid}: gpu_temp_avg {got}, samples say {want}"
        );
    }
    // The state after the quiet close is stored too.
    let deadline = Instant::now() + Duration::from_secs(120);
    while scalar_i64(&c, "SELECT count(*) FROM gpu_health.engine_checkpoints").await == 0 {
        assert!(
            Instant::now() < deadline,
            "no checkpoint after the quiet close"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A dead letter over the brokers' message limit goes to the DLQ truncated, with its
/// original size and SHA-256 in headers (a stock broker refuses over 1 MB).
#[tokio::test(flavor = "multi_thread")]
async fn an_over_size_dead_letter_is_produced_truncated() {
    use sha2::{Digest, Sha256};
    require_services!(an_over_size_dead_letter_is_produced_truncated: "KAFKA_BROKERS");
    let name = format!("gpu-metrics-big-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let big = format!(
        r#"{{"time":1770805800000,"gpu_uuid":"GPU-b1900000-0000","hostname":"h","pad":"{}"}}"#,
        "x".repeat(1_500_000)
    );
    let small =
        r#"{"time":1770805810000,"gpu_uuid":"GPU-b1900000-0000","hostname":"h","gpu_temp":50}"#;
    let dump = dir.join("in.jsonl");
    let lines: Vec<String> = [small, &big]
        .iter()
        .map(|v| {
            serde_json::json!({"key": "GPU-b1900000-0000", "partition": 0, "value": v}).to_string()
        })
        .collect();
    std::fs::write(&dump, lines.join("\n")).unwrap();
    let mut cfg = fixture_pipeline(&name);
    cfg.source = SourceConfig::File {
        path: dump.display().to_string(),
        topic: name.clone(),
    };
    cfg.sink = gpu_health::config::SinkConfig::Parquet {
        path: dir.join("out").display().to_string(),
        rows_per_file: 1000,
    };
    let outputs = output_topics(&name);
    cfg.topics = Some(outputs.clone());
    let report = gpu_health::run_pipeline(cfg).await.unwrap();
    assert_eq!(report.dead_letters.get("too_large"), Some(&1));
    let dlq = consume_all(&outputs.dead_letters);
    assert_eq!(dlq.len(), 1);
    let m = &dlq[0];
    let h = |k: &str| m.headers.get(k).cloned().unwrap_or_default();
    assert_eq!(h("error.reason"), "too_large");
    assert_eq!(h("error.truncated"), "true");
    assert_eq!(h("original.size"), big.len().to_string());
    let want: String = Sha256::digest(big.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(h("original.sha256"), want);
    assert!(
        m.value.len() < 1_000_000,
        "{} bytes produced",
        m.value.len()
    );
    assert_eq!(
        m.value,
        big.as_bytes()[..m.value.len()],
        "the payload is the original's head"
    );
}
