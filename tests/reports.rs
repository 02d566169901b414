//! `gpu-health report`: the query patterns against the Parquet store checked against
//! naive computations over the stored rows, the same reports from TimescaleDB equal to
//! the Parquet ones, and the output formats.

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashMap};

use common::db::{backfill, fresh_db};
use common::{FixtureRun, fixture_run, read_table};
use gpu_health::report::{Cell, Format, Query, Store, Table, render};

/// The fixture's Parquet run (made once, outside the test's runtime).
async fn fixture() -> &'static FixtureRun {
    tokio::task::spawn_blocking(fixture_run).await.unwrap()
}

async fn parquet_store() -> Store {
    Store::parquet(&fixture().await.out).await.unwrap()
}

fn all_queries() -> Vec<Query> {
    vec![
        Query::Latest {
            gpu: None,
            limit: 1,
        },
        Query::Latest {
            gpu: Some(first_gpu()),
            limit: 25,
        },
        Query::Temperature {
            gpu: None,
            hours: 24,
        },
        Query::Temperature {
            gpu: Some(first_gpu()),
            hours: 6,
        },
        Query::Fleet,
        Query::Spikes {
            threshold_c: 85.0,
            rise_c: 10.0,
            hours: 72,
            limit: 40,
        },
        Query::Ecc {
            hours: 24,
            limit: 20,
        },
        Query::Power {
            hours: 24,
            limit: 20,
        },
        Query::Degrading { limit: 10 },
        Query::Missing { limit: 10 },
    ]
}

fn first_gpu() -> String {
    let raw = read_table(&fixture_run().out.join("gpu_metrics"));
    raw.iter()
        .map(|r| r["gpu_uuid"].s().to_owned())
        .min()
        .unwrap()
}

fn micros(c: &Cell) -> i64 {
    match c {
        Cell::Time(t) => t.timestamp_micros(),
        other => panic!("not a time: {other:?}"),
    }
}

fn text(c: &Cell) -> &str {
    match c {
        Cell::Text(s) => s,
        other => panic!("not text: {other:?}"),
    }
}

fn int(c: &Cell) -> i64 {
    match c {
        Cell::Int(v) => *v,
        other => panic!("not an integer: {other:?}"),
    }
}

/// The newest sample of every GPU is each GPU's maximum raw time, and `--gpu` lists
/// that GPU's newest samples in descending time.
#[tokio::test(flavor = "multi_thread")]
async fn latest_is_each_gpus_newest_raw_sample() {
    let store = parquet_store().await;
    let raw = read_table(&fixture_run().out.join("gpu_metrics"));
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    for r in &raw {
        let t = r["time"].i().unwrap();
        let e = newest.entry(r["gpu_uuid"].s().to_owned()).or_insert(t);
        *e = (*e).max(t);
    }
    // The report looks 10 minutes back from the newest sample of the fleet.
    let fleet_newest = *newest.values().max().unwrap();
    newest.retain(|_, t| *t >= fleet_newest - 600_000_000);
    let t = store
        .run(&Query::Latest {
            gpu: None,
            limit: 1,
        })
        .await
        .unwrap();
    let (g, ti) = (t.column("gpu_uuid").unwrap(), t.column("time").unwrap());
    let got: BTreeMap<String, i64> = t
        .rows
        .iter()
        .map(|r| (text(&r[g]).to_owned(), micros(&r[ti])))
        .collect();
    assert_eq!(got, newest);
    assert_eq!(t.rows.len(), got.len(), "one row per GPU");

    let gpu = first_gpu();
    let mut times: Vec<i64> = raw
        .iter()
        .filter(|r| r["gpu_uuid"].s() == gpu)
        .map(|r| r["time"].i().unwrap())
        .collect();
    times.sort_unstable_by(|a, b| b.cmp(a));
    times.truncate(25);
    let t = store
        .run(&Query::Latest {
            gpu: Some(gpu.clone()),
            limit: 25,
        })
        .await
        .unwrap();
    let got: Vec<i64> = t.rows.iter().map(|r| micros(&r[ti])).collect();
    assert_eq!(got, times);
}

/// Fleet status: GPUs per grade on the newest scored day, counted from the score rows.
#[tokio::test(flavor = "multi_thread")]
async fn fleet_counts_the_newest_day_by_grade() {
    let scores = read_table(&fixture().await.out.join("gpu_health_scores"));
    let day = scores.iter().map(|r| r["time"].i().unwrap()).max().unwrap();
    // `missing` and `insufficient_data` rows have no overall score: their minimum is NULL.
    let mut want: BTreeMap<String, (i64, Option<f64>)> = BTreeMap::new();
    for r in scores.iter().filter(|r| r["time"].i() == Some(day)) {
        let e = want.entry(r["grade"].s().to_owned()).or_insert((0, None));
        e.0 += 1;
        if let Some(o) = r["overall_score"].f() {
            e.1 = Some(e.1.map_or(o, |m: f64| m.min(o)));
        }
    }
    let t = parquet_store().await.run(&Query::Fleet).await.unwrap();
    let (g, n, min) = (
        t.column("grade").unwrap(),
        t.column("gpus").unwrap(),
        t.column("score_min").unwrap(),
    );
    let got: BTreeMap<String, (i64, Option<f64>)> = t
        .rows
        .iter()
        .map(|r| {
            let m = match r[min] {
                Cell::Float(m) => Some(m),
                Cell::Null => None,
                _ => panic!("score_min"),
            };
            (text(&r[g]).to_owned(), (int(&r[n]), m))
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        got.values().map(|v| v.0).sum::<i64>(),
        fixture_run().manifest.gpus.len() as i64
    );
    // Best grade first.
    let order: Vec<&str> = t.rows.iter().map(|r| text(&r[g])).collect();
    let rank = |g: &str| {
        [
            "excellent",
            "good",
            "fair",
            "degraded",
            "poor",
            "critical",
            "insufficient_data",
            "missing",
        ]
        .iter()
        .position(|x| *x == g)
        .unwrap()
    };
    assert!(
        order.windows(2).all(|w| rank(w[0]) < rank(w[1])),
        "{order:?}"
    );
}

/// Temperature trend: each 15-minute bucket's hottest reading and GPU count equal the
/// raw samples of the bucket (those dead-lettered as too late never reach a rollup).
#[tokio::test(flavor = "multi_thread")]
async fn temperature_trend_follows_the_raw_samples() {
    let out = &fixture().await.out;
    let late: std::collections::HashSet<(String, i64)> = read_table(&out.join("dead_letters"))
        .iter()
        .filter(|r| r["reason"].s() == "too_late")
        .filter_map(|r| Some((r["gpu_uuid"].s().to_owned(), r["time"].i()?)))
        .collect();
    const BUCKET: i64 = 900_000_000;
    let mut want: BTreeMap<i64, (f64, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for r in read_table(&out.join("gpu_metrics")) {
        let (gpu, t) = (r["gpu_uuid"].s().to_owned(), r["time"].i().unwrap());
        if late.contains(&(gpu.clone(), t)) {
            continue;
        }
        let e = want
            .entry(t.div_euclid(BUCKET) * BUCKET)
            .or_insert((f64::MIN, Default::default()));
        if let Some(v) = r["gpu_temp"].f() {
            e.0 = e.0.max(v);
        }
        e.1.insert(gpu);
    }
    let t = parquet_store()
        .await
        .run(&Query::Temperature {
            gpu: None,
            hours: 6,
        })
        .await
        .unwrap();
    assert_eq!(t.rows.len(), 24, "6 hours of 15-minute buckets");
    let (ti, gi, mi) = (
        t.column("time").unwrap(),
        t.column("gpus").unwrap(),
        t.column("gpu_temp_max").unwrap(),
    );
    let newest = *want.keys().max().unwrap();
    for r in &t.rows {
        let at = micros(&r[ti]);
        assert!(
            at > newest - 6 * 3_600_000_000,
            "{at} is outside the window"
        );
        let (max, gpus) = &want[&at];
        assert_eq!(int(&r[gi]), gpus.len() as i64, "GPUs at {at}");
        let Cell::Float(got) = r[mi] else {
            panic!("gpu_temp_max")
        };
        assert_eq!(got, *max, "hottest reading at {at}");
    }
}

/// ECC rates: the 1-minute deltas the report sums equal each counter's increase
/// computed from the raw samples (a reset counts its new value), over the same buckets.
#[tokio::test(flavor = "multi_thread")]
async fn ecc_sums_equal_the_counter_increases_of_the_raw_samples() {
    let out = &fixture().await.out;
    let raw = read_table(&out.join("gpu_metrics"));
    let minutes = read_table(&out.join("gpu_metrics_1min"));
    let newest_bucket = minutes
        .iter()
        .map(|r| r["time"].i().unwrap())
        .max()
        .unwrap();
    let hours = 24;
    // Buckets after newest - 24 h: the first starts one minute after that.
    let from = newest_bucket - hours * 3_600_000_000 + 60_000_000;
    let to = newest_bucket + 60_000_000;
    // Per GPU: (time, ecc_sbe_aggregate, ecc_dbe_aggregate).
    type Samples = Vec<(i64, Option<i64>, Option<i64>)>;
    let mut by_gpu: HashMap<String, Samples> = HashMap::new();
    for r in &raw {
        by_gpu
            .entry(r["gpu_uuid"].s().to_owned())
            .or_default()
            .push((
                r["time"].i().unwrap(),
                r["ecc_sbe_aggregate"].i(),
                r["ecc_dbe_aggregate"].i(),
            ));
    }
    let increase = |samples: &[(i64, Option<i64>)]| -> i64 {
        let mut prev: Option<i64> = None;
        let mut total = 0;
        for &(t, v) in samples {
            let Some(v) = v else { continue };
            if t >= to {
                break;
            }
            if t >= from
                && let Some(p) = prev
            {
                total += if v >= p { v - p } else { v };
            }
            prev = Some(v);
        }
        total
    };
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (gpu, mut s) in by_gpu {
        s.sort_by_key(|x| x.0);
        let sbe = increase(&s.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>());
        let dbe = increase(&s.iter().map(|x| (x.0, x.2)).collect::<Vec<_>>());
        if sbe > 0 || dbe > 0 {
            want.insert(gpu, (sbe, dbe));
        }
    }
    assert!(
        !want.is_empty(),
        "the fixture has ECC errors in its last day"
    );
    let t = parquet_store()
        .await
        .run(&Query::Ecc {
            hours: hours as u32,
            limit: 1000,
        })
        .await
        .unwrap();
    let (g, s, d) = (
        t.column("gpu_uuid").unwrap(),
        t.column("sbe").unwrap(),
        t.column("dbe").unwrap(),
    );
    let got: BTreeMap<String, (i64, i64)> = t
        .rows
        .iter()
        .filter(|r| int(&r[s]) > 0 || int(&r[d]) > 0)
        .map(|r| (text(&r[g]).to_owned(), (int(&r[s]), int(&r[d]))))
        .collect();
    assert_eq!(got, want);
    let rate = t.column("sbe_per_hour").unwrap();
    for r in &t.rows {
        let Cell::Float(per_hour) = r[rate] else {
            panic!("sbe_per_hour")
        };
        assert!((per_hour - int(&r[s]) as f64 / hours as f64).abs() < 1e-9);
    }
}

/// Every pattern returns the same table from TimescaleDB as from the Parquet store of
/// the same input: one SQL text, two engines.
#[tokio::test(flavor = "multi_thread")]
async fn timescale_and_parquet_give_the_same_reports() {
    require_services!(timescale_and_parquet_give_the_same_reports: "DATABASE_URL");
    let (url, _) = fresh_db("t_reports").await;
    backfill(&url, None).await;
    let db = Store::timescale(&url).await.unwrap();
    let pq = parquet_store().await;
    for q in all_queries() {
        let a = db.run(&q).await.unwrap();
        let b = pq.run(&q).await.unwrap();
        assert_eq!(a.columns, b.columns, "{}", q.name());
        assert_eq!(a.rows.len(), b.rows.len(), "{}: row count", q.name());
        assert!(!a.rows.is_empty(), "{} returned no rows", q.name());
        for (ra, rb) in a.rows.iter().zip(&b.rows) {
            for ((ca, cb), col) in ra.iter().zip(rb).zip(&a.columns) {
                let same = match (ca, cb) {
                    (Cell::Float(x), Cell::Float(y)) => {
                        (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
                    }
                    _ => ca == cb,
                };
                assert!(same, "{}: {col}: {ca:?} vs {cb:?}", q.name());
            }
        }
    }
    // The page renders from the database too.
    let page = gpu_health::report::html::render(
        &db,
        &gpu_health::report::html::HtmlOptions { days: 30, worst: 5 },
    )
    .await
    .unwrap();
    assert_eq!(page.matches("<figure class=\"plot\">").count(), 4);
    assert_eq!(page.matches("<svg").count(), 4, "every figure holds a plot");
    assert!(!page.contains("no data"), "a plot had no data");
}

/// Table, CSV and JSON carry the same cells; CSV quotes what needs quoting.
#[test]
fn formats_agree() {
    let t = Table {
        columns: vec!["gpu".into(), "score".into(), "note".into()],
        rows: vec![
            vec![
                Cell::Text("GPU-1".into()),
                Cell::Float(71.25),
                Cell::Text("hot, \"very\"".into()),
            ],
            vec![Cell::Text("GPU-2".into()), Cell::Null, Cell::Int(3)],
        ],
    };
    let csv = render(&t, Format::Csv).unwrap();
    assert_eq!(
        csv,
        "gpu,score,note\nGPU-1,71.25,\"hot, \"\"very\"\"\"\nGPU-2,,3\n"
    );
    let json: serde_json::Value = serde_json::from_str(&render(&t, Format::Json).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"gpu": "GPU-1", "score": 71.25, "note": "hot, \"very\""},
            {"gpu": "GPU-2", "score": null, "note": 3}
        ])
    );
    let table = render(&t, Format::Table).unwrap();
    assert!(
        table.contains("71.25") && table.contains("(2 rows)"),
        "{table}"
    );
}

/// Missing GPUs: the newest day's `missing` rows, longest silent first, each with its
/// last-seen time, as the score rows hold them.
#[tokio::test(flavor = "multi_thread")]
async fn missing_lists_the_silent_gpus_with_their_last_seen_time() {
    let scores = read_table(&fixture().await.out.join("gpu_health_scores"));
    let day = scores.iter().map(|r| r["time"].i().unwrap()).max().unwrap();
    let mut want: Vec<(i64, String)> = scores
        .iter()
        .filter(|r| r["time"].i() == Some(day) && r["grade"].s() == "missing")
        .map(|r| (r["last_seen"].i().unwrap(), r["gpu_uuid"].s().to_owned()))
        .collect();
    want.sort();
    let t = parquet_store()
        .await
        .run(&Query::Missing { limit: 50 })
        .await
        .unwrap();
    let (u, l) = (
        t.column("gpu_uuid").unwrap(),
        t.column("last_seen").unwrap(),
    );
    let got: Vec<(i64, String)> = t
        .rows
        .iter()
        .map(|r| (micros(&r[l]), text(&r[u]).to_owned()))
        .collect();
    assert_eq!(got, want);
}
