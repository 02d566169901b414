//! Health on fleets as they are (issue 13): a GPU that joins at 22:00, one that is
//! retired mid-fleet and comes back, one sampled every second with jitter, an H200, a
//! model no table knows, a job's 20-minute log and a GPU that dies. The dump is written
//! here, sample by sample; every expectation is worked out from these samples, apart
//! from the code (GPU-days with data, silence, naive coverage).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use common::{Cell, read_table, run_dump};

const S: i64 = 1_000_000;
const DAY: i64 = 86_400 * S;
/// 2026-03-02T00:00:00Z (a Monday), µs.
const T0: i64 = 1_772_409_600 * S;
const DAYS: i64 = 6;

type Row = HashMap<String, Cell>;

/// One GPU's samples and how they look.
struct Gpu {
    uuid: &'static str,
    model: &'static str,
    /// Sample times, µs.
    times: Vec<i64>,
    power: f64,
    temp: f64,
    /// Extra flat fields (the GPU's own limits).
    extra: &'static str,
}

fn every(from: i64, to: i64, step: i64) -> Vec<i64> {
    (0..)
        .map(|i| from + i * step)
        .take_while(|t| *t < to)
        .collect()
}

fn fleet() -> Vec<Gpu> {
    let h100 = "NVIDIA H100 80GB HBM3";
    // A jittered 1-s sampler: 1 s +- 0.3 s, deterministic.
    let mut jittered = Vec::new();
    let (mut t, mut x) = (T0 + DAY, 12345u64);
    while t < T0 + 2 * DAY {
        jittered.push(t);
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        t += S + ((x >> 33) % 600_001) as i64 - 300_000;
    }
    let mut returner = every(T0, T0 + 2 * DAY, 30 * S);
    returner.extend(every(T0 + 5 * DAY, T0 + 6 * DAY, 30 * S));
    vec![
        Gpu {
            uuid: "GPU-00000000-0000-4000-8000-00000000a001",
            model: h100,
            times: every(T0, T0 + DAYS * DAY, 30 * S),
            power: 420.0,
            temp: 62.0,
            extra: "",
        },
        // Joins on day 2 at 22:00.
        Gpu {
            uuid: "GPU-00000000-0000-4000-8000-00000000a002",
            model: h100,
            times: every(T0 + 2 * DAY + 22 * 3600 * S, T0 + DAYS * DAY, 30 * S),
            power: 410.0,
            temp: 60.0,
            extra: "",
        },
        // Days 0-1, silent days 2-4 (retired after two days), back on day 5.
        Gpu {
            uuid: "GPU-00000000-0000-4000-8000-00000000a003",
            model: h100,
            times: returner,
            power: 400.0,
            temp: 61.0,
            extra: "",
        },
        // Every 1 s with jitter on day 1, carrying its own limits.
        Gpu {
            uuid: "GPU-00000000-0000-4000-8000-00000000a004",
            model: "NVIDIA H200",
            times: jittered,
            power: 626.0,
            temp: 55.0,
            extra: r#","power_limit":700.0,"gpu_temp_tlimit":32.0,"max_sm_clock_mhz":1980"#,
        },
        // An H200 that carries no limits: the table's 700 W applies.
        Gpu {
            uuid: "GPU-00000000-0000-4000-8000-00000000a005",
            model: "NVIDIA H200",
            times: every(T0, T0 + DAYS * DAY, 30 * S),
            power: 626.0,
            temp: 58.0,
            extra: "",
        },
        // A model no table knows, drawing 900 W.
        Gpu {
            uuid: "GPU-00000000-0000-4000-8000-00000000a006",
            model: "NVIDIA Future Accelerator X9",
            times: every(T0, T0 + DAYS * DAY, 30 * S),
            power: 900.0,
            temp: 70.0,
            extra: "",
        },
        // A job's log: 20 minutes on day 4.
        Gpu {
            uuid: "GPU-00000000-0000-4000-8000-00000000a007",
            model: h100,
            times: every(T0 + 4 * DAY + 3600 * S, T0 + 4 * DAY + 4800 * S, 30 * S),
            power: 500.0,
            temp: 66.0,
            extra: "",
        },
        // Reports days 0-2 and falls silent on day 3 at 06:00.
        Gpu {
            uuid: "GPU-00000000-0000-4000-8000-00000000a008",
            model: h100,
            times: every(T0, T0 + 3 * DAY + 6 * 3600 * S, 30 * S),
            power: 405.0,
            temp: 61.0,
            extra: "",
        },
    ]
}

fn write_dump(fleet: &[Gpu], path: &Path) {
    let mut lines: Vec<(i64, String)> = Vec::new();
    for g in fleet {
        for t in &g.times {
            let value = format!(
                r#"{{"time":"{}","gpu_uuid":"{}","hostname":"node-1","gpu_model":"{}","gpu_temp":{},"memory_temp":{},"power_usage":{},"throttle_reasons":0,"sm_clock_mhz":1950,"sm_active":0.8,"gpu_utilization":97.0,"ecc_sbe_aggregate":0,"ecc_dbe_aggregate":0,"ecc_dbe_volatile":0,"retired_pages_dbe":0{}}}"#,
                chrono::DateTime::from_timestamp_micros(*t)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                g.uuid,
                g.model,
                g.temp,
                g.temp + 6.0,
                g.power,
                g.extra
            );
            let rec = serde_json::json!({"key": g.uuid, "partition": 0, "value": value});
            lines.push((*t, rec.to_string()));
        }
    }
    lines.sort_by_key(|l| l.0);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (_, l) in lines {
        writeln!(f, "{l}").unwrap();
    }
}

struct Run {
    rows: Vec<Row>,
    fleet: Vec<Gpu>,
}

fn run() -> &'static Run {
    static RUN: std::sync::OnceLock<Run> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let fleet = fleet();
        let dump = std::env::temp_dir().join(format!(
            "gpu-health-real-fleets-{}.jsonl",
            std::process::id()
        ));
        write_dump(&fleet, &dump);
        let (_, out) = run_dump(&dump, "real-fleets", |cfg| {
            // Retire after two silent days, so a six-day fleet shows it.
            cfg.health.retire_after = std::time::Duration::from_secs(2 * 86_400);
        });
        let rows = read_table(&out.join("gpu_health_scores"));
        let _ = std::fs::remove_file(&dump);
        Run { rows, fleet }
    })
}

fn day_row<'a>(rows: &'a [Row], gpu: &str, day: i64) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r["gpu_uuid"].s() == gpu && r["time"].i() == Some(T0 + day * DAY))
}

fn grade(r: &Row) -> &str {
    r["grade"].s()
}

const GOOD: [&str; 2] = ["excellent", "good"];

#[test]
fn score_rows_are_the_gpu_days_with_data_plus_the_missing_days() {
    let Run { rows, fleet } = run();
    // Independently: a GPU-day with data is a (GPU, UTC day) holding a sample; a
    // missing day is a day without one, silent for at least a day (stale_after) and
    // less than two (retire_after) at its end, after the GPU's last sample. The input
    // ends at its newest sample, which bounds the last day.
    let end = fleet
        .iter()
        .flat_map(|g| g.times.iter())
        .max()
        .copied()
        .unwrap();
    let mut expected = BTreeSet::new();
    for g in fleet {
        let days: BTreeSet<i64> = g.times.iter().map(|t| (t - T0).div_euclid(DAY)).collect();
        for d in 0..DAYS {
            if days.contains(&d) {
                expected.insert((g.uuid, d, "data"));
                continue;
            }
            let day_end = (T0 + (d + 1) * DAY).min(end);
            let Some(last) = g.times.iter().filter(|t| **t < T0 + d * DAY).max() else {
                continue;
            };
            // Silent for retire_after at the end of an earlier day: retired, no rows
            // until it reports again.
            let retired = (0..d).any(|e| {
                !days.contains(&e) && T0 + e * DAY > *last && T0 + (e + 1) * DAY - last >= 2 * DAY
            });
            let silent = day_end - last;
            if !retired && (DAY..2 * DAY).contains(&silent) {
                expected.insert((g.uuid, d, "missing"));
            }
        }
    }
    let got: BTreeSet<(&str, i64, &str)> = rows
        .iter()
        .map(|r| {
            let g = fleet.iter().find(|g| g.uuid == r["gpu_uuid"].s()).unwrap();
            let kind = if grade(r) == "missing" {
                "missing"
            } else {
                "data"
            };
            (g.uuid, (r["time"].i().unwrap() - T0) / DAY, kind)
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per GPU-day, never more"
    );
}

#[test]
fn a_gpu_that_joins_at_22_00_is_judged_on_its_two_hours() {
    let Run { rows, fleet } = run();
    let r = day_row(rows, fleet[1].uuid, 2).expect("joining day scored");
    assert!(
        GOOD.contains(&grade(r)),
        "{} {}",
        grade(r),
        r["degradation_factors"].s()
    );
    assert_eq!(r["expected_span_s"].f(), Some(7200.0));
    assert!((r["covered_s"].f().unwrap() - 7200.0).abs() < 1.0);
    assert_eq!(
        r["sample_interval_s"]
            .f()
            .map(|x| (x / 30.0 - 1.0).abs() < 0.1),
        Some(true)
    );
}

#[test]
fn a_retired_gpu_that_comes_back_resumes_with_a_new_history() {
    let Run { rows, fleet } = run();
    let g = fleet[2].uuid;
    let missing = day_row(rows, g, 2).expect("first silent day");
    assert_eq!(grade(missing), "missing");
    assert_eq!(
        missing["last_seen"].i(),
        fleet[2]
            .times
            .iter()
            .filter(|t| **t < T0 + 2 * DAY)
            .max()
            .copied()
    );
    assert_eq!(missing["overall_score"], Cell::Null);
    assert!(day_row(rows, g, 3).is_none() && day_row(rows, g, 4).is_none());
    let back = day_row(rows, g, 5).expect("scored again when back");
    assert!(GOOD.contains(&grade(back)), "{}", grade(back));
    // Its state was dropped: the trend starts over.
    assert_eq!(back["score_delta_7d"], Cell::Null);
}

/// Covered seconds the naive way: sort, each sample covers up to twice the median
/// spacing after it, the span ends at `end`.
fn naive_covered(times: &[i64], start: i64, end: i64) -> f64 {
    let mut t: Vec<i64> = times
        .iter()
        .copied()
        .filter(|t| *t >= start && *t < end)
        .collect();
    t.sort();
    let mut gaps: Vec<i64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let cover = 2 * gaps[(gaps.len() - 1) / 2];
    let mut covered = 0;
    for (i, x) in t.iter().enumerate() {
        let next = t.get(i + 1).copied().unwrap_or(end);
        covered += ((x + cover).min(next).min(end) - x).max(0);
    }
    covered as f64 / 1e6
}

#[test]
fn one_second_jittered_sampling_covers_its_day() {
    let Run { rows, fleet } = run();
    let g = &fleet[3];
    let r = day_row(rows, g.uuid, 1).expect("sampled day scored");
    assert!(
        GOOD.contains(&grade(r)),
        "{} {}",
        grade(r),
        r["degradation_factors"].s()
    );
    let naive = naive_covered(&g.times, T0 + DAY, T0 + 2 * DAY);
    let got = r["covered_s"].f().unwrap();
    assert!(
        (got - naive).abs() < 5.0,
        "covered {got} s, naive {naive} s"
    );
    assert!(r["coverage"].f().unwrap() > 0.999);
    let interval = r["sample_interval_s"].f().unwrap();
    assert!((0.9..1.1).contains(&interval), "interval {interval}");
    assert_eq!(r["sample_count"].i(), Some(g.times.len() as i64));
    // Its own limits came first: 626 W of 700 W, headroom 32 C.
    assert_eq!(r["power_limit_w"].f(), Some(700.0));
    assert!(r["limits_source"].s().contains("power=sample"));
    assert_eq!(r["tlimit_headroom_p05"].f(), Some(32.0));
}

#[test]
fn an_h200_is_judged_against_its_own_row_not_a_default() {
    let Run { rows, fleet } = run();
    for d in 0..DAYS {
        let r = day_row(rows, fleet[4].uuid, d).unwrap();
        assert!(GOOD.contains(&grade(r)), "day {d}: {}", grade(r));
        assert!(!r["degradation_factors"].s().contains("power_over_limit"));
        assert_eq!(r["power_limit_w"].f(), Some(700.0));
        assert!(
            r["limits_source"]
                .s()
                .contains("power=table:H200 SXM 141 GB")
        );
    }
}

#[test]
fn a_model_no_table_knows_is_not_scored_against_a_guess() {
    let Run { rows, fleet } = run();
    let r = day_row(rows, fleet[5].uuid, 1).unwrap();
    assert!(GOOD.contains(&grade(r)), "{}", grade(r));
    assert_eq!(r["top_factor"].s(), "limits_unknown");
    let f: serde_json::Value = serde_json::from_str(r["degradation_factors"].s()).unwrap();
    let unscored: Vec<&str> = f["unscored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(unscored.contains(&"power_over_limit") && unscored.contains(&"elevated_gpu_temp"));
    // Power is still scored from the power-brake bits; only the limit factor is not.
    assert!(
        !r["degradation_factors"]
            .s()
            .contains(r#""name":"power_over_limit","dimension""#)
    );
    assert_eq!(r["power_limit_w"], Cell::Null);
    assert_eq!(
        r["limits_source"].s(),
        "power=unknown slowdown=unknown memory=unknown clock=unknown"
    );
}

#[test]
fn a_twenty_minute_log_is_insufficient_not_critical() {
    let Run { rows, fleet } = run();
    let r = day_row(rows, fleet[6].uuid, 4).unwrap();
    assert_eq!(grade(r), "insufficient_data");
    assert_eq!(r["overall_score"], Cell::Null);
    // The dimensions its data supports are there.
    assert_eq!(r["thermal_score"].f(), Some(100.0));
    // 39 spacings of 30 s, and the last sample covers two intervals (the median to
    // within its 10 % bin).
    assert!(
        (r["covered_s"].f().unwrap() - 1230.0).abs() < 7.0,
        "{:?}",
        r["covered_s"]
    );
}

#[test]
fn a_gpu_that_dies_is_critical_then_missing_then_gone() {
    let Run { rows, fleet } = run();
    let g = fleet[7].uuid;
    for d in 0..3 {
        assert!(GOOD.contains(&grade(day_row(rows, g, d).unwrap())));
    }
    let r = day_row(rows, g, 3).unwrap();
    assert_eq!(grade(r), "critical");
    assert!(r["degradation_factors"].s().contains("stopped_reporting"));
    assert_eq!(grade(day_row(rows, g, 4).unwrap()), "missing");
    assert!(day_row(rows, g, 5).is_none());
}

#[test]
fn healthy_gpus_stay_good_every_day() {
    let Run { rows, fleet } = run();
    for d in 0..DAYS {
        let r = day_row(rows, fleet[0].uuid, d).unwrap();
        assert!(GOOD.contains(&grade(r)), "day {d}: {}", grade(r));
        assert!((r["coverage"].f().unwrap() - 1.0).abs() < 1e-9 || d == DAYS - 1);
    }
}
