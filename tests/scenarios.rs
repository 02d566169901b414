//! Scenario tests: each fault injected into the fixture gives the expected grade,
//! dimension and factor for its GPU and day, and healthy GPUs grade excellent or good.

mod common;

use std::collections::HashMap;

use common::{Cell, fixture_run, read_table, rfc3339_us};

const DAY_US: i64 = 86_400_000_000;

type Row = HashMap<String, Cell>;

struct Scores {
    rows: Vec<Row>,
}

impl Scores {
    fn day(&self, gpu: &str, day_start: i64) -> &Row {
        self.rows
            .iter()
            .find(|r| r["gpu_uuid"].s() == gpu && r["time"].i() == Some(day_start))
            .unwrap_or_else(|| panic!("no score for {gpu} on day starting {day_start}"))
    }
}

fn factors(r: &Row) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(r["degradation_factors"].s()).unwrap();
    v["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

fn gates(r: &Row) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(r["degradation_factors"].s()).unwrap();
    v["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

fn lowest_dimension(r: &Row) -> &'static str {
    ["thermal", "power", "memory", "performance", "reliability"]
        .into_iter()
        .min_by(|a, b| {
            let x = r[&format!("{a}_score")].f().unwrap_or(f64::INFINITY);
            let y = r[&format!("{b}_score")].f().unwrap_or(f64::INFINITY);
            x.total_cmp(&y)
        })
        .unwrap()
}

fn grade(r: &Row) -> &str {
    r["grade"].s()
}

const AT_BEST_DEGRADED: [&str; 4] = ["degraded", "poor", "critical", "fair"];

fn setup() -> (Scores, &'static common::FixtureRun) {
    let run = fixture_run();
    (
        Scores {
            rows: read_table(&run.out.join("gpu_health_scores")),
        },
        run,
    )
}

fn scenario(run: &common::FixtureRun, name: &str) -> (String, i64) {
    let s = run
        .manifest
        .scenarios
        .iter()
        .find(|s| s.scenario == name)
        .unwrap_or_else(|| panic!("fixture lacks scenario {name}"));
    let start = rfc3339_us(&run.manifest.options.start);
    (
        s.gpu_uuid.clone(),
        start.div_euclid(DAY_US) * DAY_US + s.day as i64 * DAY_US,
    )
}

/// The GPUs the fixture injected a fault into.
fn faulty_gpus(run: &common::FixtureRun) -> Vec<&str> {
    run.manifest
        .scenarios
        .iter()
        .map(|s| s.gpu_uuid.as_str())
        .collect()
}

#[test]
fn score_rows_are_the_gpu_days_with_data_plus_the_missing_days() {
    let (scores, run) = setup();
    // GPU-days with data, from the 1-minute rollups (a row exists for every minute with
    // a sample), apart from the health stage.
    let minutes = read_table(&run.out.join("gpu_metrics_1min"));
    let mut with_data: std::collections::BTreeSet<(String, i64)> = minutes
        .iter()
        .map(|r| {
            let t = r["time"].i().unwrap();
            (r["gpu_uuid"].s().to_owned(), t.div_euclid(DAY_US) * DAY_US)
        })
        .collect();
    let days = run.manifest.options.days.ceil() as usize;
    assert!(scores.rows.len() <= run.manifest.gpus.len() * days);
    for r in &scores.rows {
        let key = (r["gpu_uuid"].s().to_owned(), r["time"].i().unwrap());
        if grade(r) == "missing" {
            // Silent all day, for at least a day since it was last seen.
            assert!(!with_data.contains(&key), "missing with data: {key:?}");
            let last = r["last_seen"].i().expect("a missing row says when");
            assert!(key.1 + DAY_US - last >= DAY_US, "{key:?} last seen {last}");
            assert_eq!(r["sample_count"].i(), Some(0));
        } else {
            assert!(with_data.remove(&key), "scored without data: {key:?}");
        }
    }
    assert!(
        with_data.is_empty(),
        "GPU-days with data but no score: {with_data:?}"
    );
}

#[test]
fn thermal_runaway_is_a_thermal_problem() {
    let (scores, run) = setup();
    let (gpu, day) = scenario(run, "thermal_runaway");
    let r = scores.day(&gpu, day);
    assert!(
        ["degraded", "poor", "critical"].contains(&grade(r)),
        "grade {}",
        grade(r)
    );
    assert_eq!(lowest_dimension(r), "thermal");
    let f = factors(r);
    assert!(
        f[0] == "elevated_gpu_temp" || f[0] == "thermal_throttling",
        "{f:?}"
    );
    assert!(f.contains(&"thermal_throttling".to_string()), "{f:?}");
    // The day before was fine.
    assert!(["excellent", "good"].contains(&grade(scores.day(&gpu, day - DAY_US))));
}

#[test]
fn ecc_storm_escalates_to_critical_with_uncorrectable_errors() {
    let (scores, run) = setup();
    let (gpu, day) = scenario(run, "ecc_storm");
    let first = scores.day(&gpu, day);
    assert_eq!(lowest_dimension(first), "memory");
    assert!(
        factors(first).contains(&"sbe_rate".to_string()),
        "{:?}",
        factors(first)
    );
    // The double-bit day is the last day with the storm: critical, memory at zero.
    let last_day = scores
        .rows
        .iter()
        .filter(|r| r["gpu_uuid"].s() == gpu && r["grade"].s() == "critical")
        .map(|r| r["time"].i().unwrap())
        .min()
        .expect("the ECC storm never made the GPU critical");
    let r = scores.day(&gpu, last_day);
    assert_eq!(r["memory_score"].f(), Some(0.0));
    assert_eq!(factors(r)[0], "uncorrectable_ecc");
    assert!(
        gates(r).contains(&"volatile_dbe".to_string()),
        "{:?}",
        gates(r)
    );
    assert!(r["ecc_dbe_increase"].i().unwrap() > 0);
}

#[test]
fn power_brake_is_a_power_problem() {
    let (scores, run) = setup();
    let (gpu, day) = scenario(run, "power_brake");
    let r = scores.day(&gpu, day);
    assert!(
        AT_BEST_DEGRADED.contains(&grade(r)) && grade(r) != "fair",
        "grade {}",
        grade(r)
    );
    assert_eq!(lowest_dimension(r), "power");
    assert_eq!(factors(r)[0], "power_brake");
    assert!(gates(r).contains(&"fault_clock_events".to_string()));
}

#[test]
fn a_gpu_that_falls_off_the_bus_is_critical() {
    let (scores, run) = setup();
    let (gpu, day) = scenario(run, "fell_off_bus");
    let r = scores.day(&gpu, day);
    assert_eq!(grade(r), "critical");
    assert!(
        factors(r).contains(&"data_gap".to_string()),
        "{:?}",
        factors(r)
    );
    let g = gates(r);
    assert!(
        g.contains(&"stopped_reporting".to_string()) || g.contains(&"critical_xid".to_string()),
        "{g:?}"
    );
    // The next day, silent all day, it is `missing`, with when it was last seen.
    let later = scores.day(&gpu, day + DAY_US);
    assert_eq!(grade(later), "missing");
    assert_eq!(later["sample_count"].i(), Some(0));
    assert!(later["last_seen"].i().unwrap() < day + DAY_US);
}

#[test]
fn a_counter_reset_is_not_an_ecc_storm() {
    let (scores, run) = setup();
    let (gpu, day) = scenario(run, "counter_reset");
    let r = scores.day(&gpu, day);
    assert!(
        ["excellent", "good"].contains(&grade(r)),
        "grade {} {:?}",
        grade(r),
        factors(r)
    );
    // Independent check of the day's SBE increase from the raw rows.
    let raw = read_table(&run.out.join("gpu_metrics"));
    let mut rows: Vec<_> = raw.iter().filter(|x| x["gpu_uuid"].s() == gpu).collect();
    rows.sort_by_key(|x| x["time"].i());
    let mut prev = None;
    let mut inc = 0;
    for x in rows {
        let t = x["time"].i().unwrap();
        if let Some(v) = x["ecc_sbe_aggregate"].i() {
            let step = match prev {
                None => 0,
                Some(p) if v >= p => v - p,
                Some(_) => v,
            };
            if t >= day && t < day + DAY_US {
                inc += step;
            }
            prev = Some(v);
        }
    }
    assert_eq!(r["ecc_sbe_increase"].i(), Some(inc));
    assert!(inc < 100, "a reset must not read as a storm: {inc}");
}

#[test]
fn a_slow_gpu_shows_low_clocks_under_load() {
    let (scores, run) = setup();
    let (gpu, _) = scenario(run, "slow_gpu");
    for r in scores.rows.iter().filter(|r| r["gpu_uuid"].s() == gpu) {
        assert_eq!(factors(r)[0], "low_clocks_under_load");
        assert_eq!(lowest_dimension(r), "performance");
        assert!(
            ["fair", "degraded", "poor"].contains(&grade(r)),
            "grade {}",
            grade(r)
        );
    }
}

#[test]
fn healthy_gpus_grade_excellent_or_good() {
    let (scores, run) = setup();
    let faulty = faulty_gpus(run);
    let mut checked = 0;
    for r in &scores.rows {
        if faulty.contains(&r["gpu_uuid"].s()) {
            continue;
        }
        assert!(
            ["excellent", "good"].contains(&grade(r)),
            "healthy {} graded {} on {:?}: {:?} {:?}",
            r["gpu_uuid"].s(),
            grade(r),
            r["time"],
            factors(r),
            gates(r)
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} healthy GPU-days");
}

/// The published baseline of HEALTH_MODEL.md for a GPU with no risk signal: about
/// 0.91 % within 30 days.
const BASELINE_P30: f64 = 0.0091;

#[test]
fn failure_predictions_name_the_failing_gpus_and_leave_healthy_ones_near_baseline() {
    let (scores, run) = setup();
    let preds = read_table(&run.out.join("gpu_failure_predictions"));
    // One prediction per scored day: `missing` and `insufficient_data` days have no
    // verdict and no prediction.
    let scored = scores
        .rows
        .iter()
        .filter(|r| !["missing", "insufficient_data"].contains(&grade(r)))
        .count();
    assert_eq!(preds.len(), scored, "one prediction per scored day");
    let faulty = faulty_gpus(run);
    let p30 = |r: &Row| r["p_fail_30d"].f().unwrap();

    // On the first day a fault makes its GPU critical, that GPU's 30-day risk exceeds
    // every healthy GPU's, and the failure type names the fault's dimension.
    for (name, kind) in [
        ("ecc_storm", "memory"),
        ("fell_off_bus", "reliability"),
        ("thermal_runaway", "thermal"),
    ] {
        let (gpu, _) = scenario(run, name);
        let day = scores
            .rows
            .iter()
            .filter(|r| r["gpu_uuid"].s() == gpu && grade(r) == "critical")
            .map(|r| r["time"].i().unwrap())
            .min()
            .unwrap_or_else(|| panic!("{name} never made its GPU critical"));
        let on_day: Vec<&Row> = preds
            .iter()
            .filter(|r| r["time"].i() == Some(day))
            .collect();
        let mine = on_day
            .iter()
            .find(|r| r["gpu_uuid"].s() == gpu)
            .unwrap_or_else(|| panic!("no prediction for {name}"));
        let healthy_max = on_day
            .iter()
            .filter(|r| !faulty.contains(&r["gpu_uuid"].s()))
            .map(|r| p30(r))
            .fold(0.0, f64::max);
        assert!(
            p30(mine) > healthy_max,
            "{name}: {} vs healthy {healthy_max}",
            p30(mine)
        );
        assert_eq!(mine["predicted_failure_type"].s(), kind, "{name}");
    }

    for r in &preds {
        let p = [r["p_fail_7d"].f(), r["p_fail_30d"].f(), r["p_fail_90d"].f()];
        let p = p.map(|x| x.unwrap());
        assert!(
            0.0 < p[0] && p[0] < p[1] && p[1] < p[2] && p[2] < 1.0,
            "{p:?}"
        );
        assert!(r["hazard_ratio"].f().unwrap() >= 1.0);
        let c = r["confidence"].f().unwrap();
        assert!((0.0..=1.0).contains(&c));
        let shares: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r["feature_importance"].s()).unwrap();
        let sum: f64 = shares.values().map(|v| v.as_f64().unwrap()).sum();
        assert!(shares.is_empty() || (sum - 1.0).abs() < 1e-9, "{shares:?}");
        if !faulty.contains(&r["gpu_uuid"].s()) {
            assert!(
                p30(r) < 2.0 * BASELINE_P30,
                "healthy {} at {:?}: {shares:?}",
                r["gpu_uuid"].s(),
                r["time"]
            );
            assert!(p30(r) >= BASELINE_P30 - 0.0001);
        }
    }
}
