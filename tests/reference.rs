//! Reference test: every 1-minute and 15-minute rollup of the fixture equals an
//! independent batch computation over all its raw samples (a naive loop over the raw
//! Parquet rows, grouped by GPU and bucket), every column.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::{Cell, fixture_run, read_table};

/// (output prefix, raw column, scale): written out here, not taken from the code.
const GAUGES: &[(&str, &str, f64)] = &[
    ("gpu_temp", "gpu_temp", 1.0),
    ("memory_temp", "memory_temp", 1.0),
    ("power_usage", "power_usage", 1.0),
    ("gpu_utilization", "gpu_utilization", 1.0),
    ("memory_utilization", "memory_utilization", 1.0),
    ("mem_copy_utilization", "mem_copy_utilization", 1.0),
    ("sm_active", "sm_active", 1.0),
    ("sm_occupancy", "sm_occupancy", 1.0),
    ("tensor_active", "tensor_active", 1.0),
    ("dram_active", "dram_active", 1.0),
    ("fb_used_bytes", "fb_used_bytes", 1.0),
    ("sm_clock_mhz", "sm_clock_mhz", 1.0),
    ("mem_clock_mhz", "mem_clock_mhz", 1.0),
    ("pcie_tx_mbps", "pcie_tx_bytes_per_sec", 1e-6),
    ("pcie_rx_mbps", "pcie_rx_bytes_per_sec", 1e-6),
];
const COUNTERS: [(&str, &str); 3] = [
    ("ecc_sbe_delta", "ecc_sbe_aggregate"),
    ("ecc_dbe_delta", "ecc_dbe_aggregate"),
    ("retired_pages_delta", "retired_pages_dbe"),
];

type Row = HashMap<String, Cell>;

/// Naive aggregates of one bucket, as PostgreSQL would compute them.
fn expected_bucket(rows: &[&Row], deltas: [Option<i64>; 3]) -> BTreeMap<String, Cell> {
    let mut out = BTreeMap::new();
    for (prefix, col, scale) in GAUGES {
        let xs: Vec<f64> = rows
            .iter()
            .filter_map(|r| r[*col].f())
            .map(|x| x * scale)
            .collect();
        let n = xs.len() as f64;
        let cell = |v: Option<f64>| v.map_or(Cell::Null, Cell::F);
        let mean = (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / n);
        out.insert(format!("{prefix}_avg"), cell(mean));
        out.insert(
            format!("{prefix}_min"),
            cell(xs.iter().cloned().reduce(f64::min)),
        );
        out.insert(
            format!("{prefix}_max"),
            cell(xs.iter().cloned().reduce(f64::max)),
        );
        let sd = (xs.len() >= 2).then(|| {
            let m = mean.unwrap_or(0.0);
            (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()
        });
        out.insert(format!("{prefix}_stddev"), cell(sd));
    }
    let count = |pred: &dyn Fn(i64) -> bool| {
        rows.iter()
            .filter(|r| r["throttle_reasons"].i().is_some_and(pred))
            .count() as i64
    };
    out.insert("throttle_events".into(), Cell::I(count(&|t| t != 0)));
    out.insert(
        "thermal_throttle_events".into(),
        Cell::I(count(&|t| t & 0x60 != 0)),
    );
    out.insert(
        "power_throttle_events".into(),
        Cell::I(count(&|t| t & 0x88 != 0)),
    );
    out.insert(
        "power_cap_events".into(),
        Cell::I(count(&|t| t & 0x04 != 0)),
    );
    out.insert("sample_count".into(), Cell::I(rows.len() as i64));
    out.insert(
        "invalid_sample_count".into(),
        Cell::I(
            rows.iter()
                .filter(|r| r["validation_passed"] == Cell::B(false))
                .count() as i64,
        ),
    );
    out.insert(
        "ecc_dbe_volatile_max".into(),
        rows.iter()
            .filter_map(|r| r["ecc_dbe_volatile"].i())
            .max()
            .map_or(Cell::Null, Cell::I),
    );
    for (k, (name, _)) in COUNTERS.iter().enumerate() {
        out.insert(name.to_string(), deltas[k].map_or(Cell::Null, Cell::I));
    }
    out
}

fn close(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::F(x), Cell::F(y)) => (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs())),
        _ => a == b,
    }
}

fn check_width(width_us: i64, table: &str) {
    let run = fixture_run();
    let raw = read_table(&run.out.join("gpu_metrics"));
    let dead = read_table(&run.out.join("dead_letters"));
    let too_late: HashSet<(String, i64)> = dead
        .iter()
        .filter(|d| d["reason"].s() == "too_late")
        .map(|d| (d["gpu_uuid"].s().to_owned(), d["time"].i().unwrap()))
        .collect();
    // Accepted rows: raw rows except the ones judged too late for rollups.
    let mut by_gpu: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in &raw {
        let key = (r["gpu_uuid"].s().to_owned(), r["time"].i().unwrap());
        if !too_late.contains(&key) {
            by_gpu.entry(key.0).or_default().push(r);
        }
    }
    let mut expected: BTreeMap<(String, i64), BTreeMap<String, Cell>> = BTreeMap::new();
    for (gpu, rows) in by_gpu.iter_mut() {
        rows.sort_by_key(|r| r["time"].i().unwrap());
        // Counter deltas: each sample's increase from the previous non-NULL value of
        // the GPU (a decrease is a reset: the new value is the increase; the first
        // value increases nothing), summed per bucket.
        let mut prev: [Option<i64>; 3] = [None; 3];
        let mut bucket_deltas: BTreeMap<i64, [Option<i64>; 3]> = BTreeMap::new();
        let mut buckets: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
        for r in rows.iter() {
            let t = r["time"].i().unwrap();
            let b = t.div_euclid(width_us) * width_us;
            buckets.entry(b).or_default().push(r);
            let d = bucket_deltas.entry(b).or_insert([None; 3]);
            for (k, (_, col)) in COUNTERS.iter().enumerate() {
                if let Some(v) = r[*col].i() {
                    let inc = match prev[k] {
                        None => 0,
                        Some(p) if v >= p => v - p,
                        Some(_) => v,
                    };
                    d[k] = Some(d[k].unwrap_or(0) + inc);
                    prev[k] = Some(v);
                }
            }
        }
        for (b, rows) in buckets {
            expected.insert((gpu.clone(), b), expected_bucket(&rows, bucket_deltas[&b]));
        }
    }

    let got = read_table(&run.out.join(table));
    let mut seen = HashSet::new();
    let mut mismatches = Vec::new();
    for row in &got {
        let key = (row["gpu_uuid"].s().to_owned(), row["time"].i().unwrap());
        assert!(seen.insert(key.clone()), "{table}: two rows for {key:?}");
        let Some(exp) = expected.get(&key) else {
            panic!("{table}: row {key:?} has no raw samples");
        };
        for (col, want) in exp {
            let have = &row[col];
            if !close(have, want) {
                mismatches.push(format!("{key:?} {col}: got {have:?}, expected {want:?}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{table}: {} mismatches, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !seen.contains(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{table}: buckets with samples but no row: {missing:?}"
    );
    assert_eq!(got.len(), expected.len());
    // The fixture covers days of a fleet: this is not a vacuous comparison.
    assert!(got.len() > 1000, "{table} has only {} rows", got.len());
}

#[test]
fn one_minute_rollups_equal_a_naive_group_by_over_raw_rows() {
    check_width(60_000_000, "gpu_metrics_1min");
}

#[test]
fn fifteen_minute_rollups_equal_a_naive_group_by_over_raw_rows() {
    check_width(900_000_000, "gpu_metrics_15min");
}

#[test]
fn ecc_deltas_add_up_to_each_counters_total_increase() {
    let run = fixture_run();
    let rollups = read_table(&run.out.join("gpu_metrics_1min"));
    let mut per_gpu: HashMap<String, i64> = HashMap::new();
    for r in &rollups {
        *per_gpu.entry(r["gpu_uuid"].s().to_owned()).or_default() +=
            r["ecc_sbe_delta"].i().unwrap_or(0);
    }
    let fifteen = read_table(&run.out.join("gpu_metrics_15min"));
    let mut per_gpu15: HashMap<String, i64> = HashMap::new();
    for r in &fifteen {
        *per_gpu15.entry(r["gpu_uuid"].s().to_owned()).or_default() +=
            r["ecc_sbe_delta"].i().unwrap_or(0);
    }
    assert_eq!(per_gpu, per_gpu15);
    // Some GPU in the fixture has SBEs: the sums are not all zero.
    assert!(per_gpu.values().any(|v| *v > 100), "{per_gpu:?}");
}
