//! A structure-aware fuzzer through the real sink (issue 12): real fixture messages,
//! mutated where their structure is (a value swapped for a hostile one, a key dropped,
//! a section of the wrong kind, a duplicated key, a lone surrogate, a NUL, a cut or a
//! flipped byte), run round after round through decode -> windows -> scores -> the
//! TimescaleDB sink. Nothing may panic or fail, the books must balance, the database
//! must hold exactly the rows the report counts, and no row may be refused by the
//! database for its content (text is cleaned at decode).
//!
//! Stable Rust, so no cargo-fuzz: seeded mutations with `rand` (ChaCha8, reproducible).
//! Time budget `GPU_HEALTH_FUZZ_SECS` (default 20 s), seed `GPU_HEALTH_FUZZ_SEED`.

#[macro_use]
mod common;

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use common::db::{apply_schema, fixture_pipeline, fresh_db, run_into, scalar_i64};
use gpu_health::dump::DumpRecord;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// Messages per round (one pipeline run).
const ROUND: usize = 2000;

/// The first `n` fixture messages as (key, value).
fn fixture_messages(n: usize) -> Vec<(Option<String>, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = std::fs::File::open(root.join(common::FIXTURE)).unwrap();
    let reader = std::io::BufReader::new(zstd::stream::read::Decoder::new(file).unwrap());
    reader
        .lines()
        .take(n)
        .map(|l| {
            let rec: DumpRecord = serde_json::from_str(&l.unwrap()).unwrap();
            let value = rec.value_bytes().unwrap();
            (rec.key, value)
        })
        .collect()
}

fn hostile_value(rng: &mut ChaCha8Rng) -> Value {
    let long = |n: usize| "é".repeat(n);
    let deep = (0..200).fold(json!(1), |v, _| json!([v]));
    let pick: [Value; 24] = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-0.0),
        json!(1e308),
        json!(-1e308),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(""),
        json!("\u{0}"),
        json!("a\u{0}b\u{7}c\u{1b}[0m\u{7f}\u{85}"),
        json!(long(150)),
        json!(long(5000)),
        json!([]),
        json!({}),
        deep,
        json!("NaN"),
        json!("-Infinity"),
        json!("1e400"),
        json!({"gpu_temp": 50, "x": [1, 2]}),
        json!("2026-11-02T10:00:00+14:00"),
        json!(1.5),
        json!(-7),
    ];
    pick.choose(rng).cloned().unwrap_or(Value::Null)
}

/// Every path to a value in `v` (object keys only; arrays are leaves).
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            prefix.push(k.clone());
            out.push(prefix.clone());
            paths(child, prefix, out);
            prefix.pop();
        }
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(k))
}

fn parent<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut serde_json::Map<String, Value>> {
    at(v, &path[..path.len() - 1]).and_then(Value::as_object_mut)
}

/// One to three mutations of a real message, in its structure or its bytes.
fn mutate(value: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = value.to_vec();
    for _ in 0..rng.random_range(1..=3) {
        let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
            break;
        };
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        let Some(path) = all.choose(rng).cloned() else {
            break;
        };
        match rng.random_range(0..10) {
            0..=3 => {
                if let Some(slot) = at(&mut v, &path) {
                    *slot = hostile_value(rng);
                }
            }
            4 => {
                if let Some(m) = parent(&mut v, &path) {
                    m.remove(&path[path.len() - 1]);
                }
            }
            5 => {
                // A key of another section (the flat and nested names mixed).
                let names = [
                    "gpu_temp",
                    "timestamp",
                    "time",
                    "gpu_uuid",
                    "hostname",
                    "health",
                    "metrics",
                    "payload",
                    "rack_id",
                ];
                let name = names.choose(rng).copied().unwrap_or("gpu_temp");
                let value = hostile_value(rng);
                if let Some(m) = parent(&mut v, &path) {
                    m.insert(name.to_owned(), value);
                }
            }
            _ => {
                bytes = serde_json::to_vec(&v).unwrap_or_default();
                bytes = byte_mutation(&bytes, rng);
                continue;
            }
        }
        bytes = serde_json::to_vec(&v).unwrap_or_default();
    }
    bytes
}

fn byte_mutation(b: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut b = b.to_vec();
    if b.is_empty() {
        return b;
    }
    let i = rng.random_range(0..b.len());
    match rng.random_range(0..7) {
        0 => b.truncate(i),
        1 => b[i] = rng.random(),
        2 => {
            // A lone surrogate escape inside the first string after `i`.
            if let Some(q) = b[i..].iter().position(|&c| c == b'"') {
                b.splice(i + q + 1..i + q + 1, *br"\ud800");
            }
        }
        3 => {
            // A duplicated key at the front.
            b.splice(1..1, *br#""gpu_temp":"dup","#);
        }
        4 => b.splice(0..0, *b"\xEF\xBB\xBF").for_each(drop),
        5 => b.insert(i, 0xff),
        _ => {
            let s = rng.random_range(0..b.len());
            let copy = b[s..].to_vec();
            b.splice(i..i, copy);
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn mutated_fixture_messages_through_the_real_sink_never_crash_and_balance() {
    require_services!(mutated_fixture_messages_through_the_real_sink_never_crash_and_balance: "DATABASE_URL");
    let budget = Duration::from_secs(
        std::env::var("GPU_HEALTH_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let seed: u64 = std::env::var("GPU_HEALTH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("fuzz seed {seed} (GPU_HEALTH_FUZZ_SEED to repeat), budget {budget:?}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pool = fixture_messages(50_000);
    let (url, mut c) = fresh_db("t_fuzz").await;
    apply_schema(&mut c).await.unwrap();
    // Retention is a policy, not a loss: a mutated year (2026 -> 2006) is a valid sample
    // that the close of each run would drop with its chunk. Off, every stored row
    // stays countable.
    // (The Apache edition's retention runs in the processor; the community edition's
    // is a background job of the server.)
    if gpu_health::db::edition(&c).await.unwrap() == gpu_health::db::Edition::Apache {
        c.batch_execute(
            "UPDATE gpu_health.retention_policies SET drop_after = interval '1000 years'",
        )
        .await
        .unwrap();
    }
    let dump = std::env::temp_dir().join(format!("gpu-health-fuzz-{}.jsonl", std::process::id()));
    let started = Instant::now();
    let (mut rounds, mut cases) = (0u64, 0u64);
    while rounds == 0 || started.elapsed() < budget {
        let mut lines = String::new();
        for _ in 0..ROUND {
            let (key, value) = pool.choose(&mut rng).unwrap();
            let value = if rng.random_bool(0.8) {
                mutate(value, &mut rng)
            } else {
                value.clone()
            };
            let rec = DumpRecord::new(key.as_deref(), 0, &value);
            lines.push_str(&serde_json::to_string(&rec).unwrap());
            lines.push('\n');
        }
        std::fs::write(&dump, lines).unwrap();
        c.batch_execute(
            "TRUNCATE gpu_metrics, gpu_metrics_1min, gpu_metrics_15min, gpu_health_scores,
                      gpu_failure_predictions, gpu_assets, gpu_metrics_dead_letters",
        )
        .await
        .ok();
        let mut cfg = fixture_pipeline("fuzz");
        cfg.source = gpu_health::config::SourceConfig::File {
            path: dump.display().to_string(),
            topic: "fuzz".into(),
        };
        let report = run_into(&url, cfg).await;
        let round = format!("round {rounds} of seed {seed}");
        assert_eq!(report.messages, ROUND as u64, "{round}");
        assert!(report.books_balance(), "{round}: {report:?}");
        assert_eq!(
            report.dead_letters.get("db_rejected"),
            None,
            "{round}: the database refused a row"
        );
        assert_eq!(
            scalar_i64(&c, "SELECT count(*) FROM gpu_metrics").await as u64,
            report.raw_rows,
            "{round}: raw rows stored"
        );
        let letters: u64 = report.dead_letters.values().sum();
        assert_eq!(
            scalar_i64(&c, "SELECT count(*) FROM gpu_metrics_dead_letters").await as u64,
            letters,
            "{round}: dead letters stored"
        );
        rounds += 1;
        cases += ROUND as u64;
    }
    eprintln!(
        "fuzz: {cases} messages in {rounds} rounds, {:.0} s, seed {seed}: no crash, books balanced",
        started.elapsed().as_secs_f64()
    );
}
