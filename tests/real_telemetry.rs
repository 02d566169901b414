//! The health model on real recordings (`../shared/real-telemetry/`, see its README):
//! no healthy GPU is graded below `good`, and the day's features agree with a naive
//! computation over the raw file. These GPUs are healthy; the recordings were not made
//! by this project.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use common::{Cell, read_table, run_dump, shared};

type Row = HashMap<String, Cell>;

const HEALTHY: [&str; 2] = ["excellent", "good"];

/// The dump's lines, decoded: (key, value object).
fn dump_rows(path: &Path) -> Vec<(String, serde_json::Value)> {
    let f = std::fs::File::open(path).unwrap();
    let r = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
    r.lines()
        .map(|l| {
            let rec: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            let value = serde_json::from_str(rec["value"].as_str().unwrap()).unwrap();
            (rec["key"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn grade(r: &Row) -> &str {
    r["grade"].s()
}

/// Each capture's GPU on its own (its day judged up to its own last sample, as a
/// user replaying one machine's log would), with the minimum of data lowered to one
/// second so that the model grades what the captures hold instead of
/// `insufficient_data`: every GPU is healthy, idle then under load.
#[test]
fn every_captured_gpu_grades_good_or_better_on_what_it_reported() {
    let Some(dump) = shared("real-telemetry/nvidia-smi-captures.dump.jsonl.gz") else {
        return;
    };
    let mut by_gpu: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in std::io::BufReader::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&dump).unwrap(),
    ))
    .lines()
    {
        let line = line.unwrap();
        let rec: serde_json::Value = serde_json::from_str(&line).unwrap();
        by_gpu
            .entry(rec["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(line);
    }
    assert_eq!(by_gpu.len(), 10, "the README's 10 capture files");
    for (i, (gpu, lines)) in by_gpu.iter().enumerate() {
        let path = std::env::temp_dir().join(format!(
            "gpu-health-capture-{}-{i}.jsonl",
            std::process::id()
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        drop(f);
        let (_, out) = run_dump(&path, &format!("capture-{i}"), |cfg| {
            cfg.health.min_data = Duration::from_secs(1);
        });
        let rows = read_table(&out.join("gpu_health_scores"));
        let _ = std::fs::remove_file(&path);
        assert_eq!(rows.len(), 1, "{gpu}: one day");
        let r = &rows[0];
        assert!(
            HEALTHY.contains(&grade(r)),
            "{gpu} ({}): {} {}",
            r["gpu_model"].s(),
            grade(r),
            r["degradation_factors"].s()
        );
        // No limit was guessed: where the table and the samples know none, the factor
        // is listed as unscored, never penalised.
        assert!(
            !r["degradation_factors"]
                .s()
                .contains("power_over_limit\",\"dimension")
        );
    }
}

/// All captures as one fleet, at the default minimum of data: two samples a GPU are
/// `insufficient_data`, and each GPU's later silent days are `missing`, one row per
/// day until it is retired, never more and never `critical`.
#[test]
fn captures_as_a_fleet_are_insufficient_then_missing_never_critical() {
    let Some(dump) = shared("real-telemetry/nvidia-smi-captures.dump.jsonl.gz") else {
        return;
    };
    let samples = dump_rows(&dump);
    let (report, out) = run_dump(&dump, "captures-fleet", |_| {});
    assert_eq!(report.raw_rows, samples.len() as u64);
    let rows = read_table(&out.join("gpu_health_scores"));
    let newest = samples
        .iter()
        .map(|(_, v)| common::rfc3339_us(v["time"].as_str().unwrap()))
        .max()
        .unwrap();
    const DAY: i64 = 86_400_000_000;
    let mut expected_missing = 0;
    let mut days_with_data = std::collections::BTreeSet::new();
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for (k, v) in &samples {
        let t = common::rfc3339_us(v["time"].as_str().unwrap());
        days_with_data.insert((k.as_str(), t.div_euclid(DAY)));
        let e = last.entry(k).or_insert(t);
        *e = (*e).max(t);
    }
    for (gpu, l) in &last {
        // Days after the last sample, silent >= 1 day and < 7 days at their end (the
        // input's newest sample bounds the last day).
        let mut d = l.div_euclid(DAY) + 1;
        while d * DAY <= newest {
            let silent = ((d + 1) * DAY).min(newest) - l;
            if (DAY..7 * DAY).contains(&silent) && !days_with_data.contains(&(*gpu, d)) {
                expected_missing += 1;
            }
            d += 1;
        }
    }
    let missing = rows.iter().filter(|r| grade(r) == "missing").count();
    assert_eq!(missing, expected_missing);
    assert_eq!(rows.len(), days_with_data.len() + expected_missing);
    for r in &rows {
        assert!(
            ["insufficient_data", "missing"].contains(&grade(r)),
            "{} {}",
            grade(r),
            r["degradation_factors"].s()
        );
    }
}

/// nanoGPT's own logger: 8 GPUs, 0.3 s sampling, 22.5 minutes. Its day's features
/// against the raw CSV, computed naively here.
#[test]
fn nanogpt_features_agree_with_the_raw_csv() {
    let (Some(csv), Some(dump)) = (
        shared("real-telemetry/nanogpt-8gpu/gpu_metrics.csv"),
        shared("real-telemetry/nanogpt-8gpu.dump.jsonl.gz"),
    ) else {
        return;
    };
    // Raw CSV: timestamp,gpu_index,temperature_C,utilization_gpu_percent,power_W.
    let text = std::fs::read_to_string(csv).unwrap();
    let mut by_index: BTreeMap<i64, Vec<(i64, f64, f64)>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let t = common::rfc3339_us(f[0]);
        by_index.entry(f[1].parse().unwrap()).or_default().push((
            t,
            f[2].parse().unwrap(),
            f[4].parse().unwrap(),
        ));
    }
    assert_eq!(by_index.len(), 8);
    // The dump names each index's GPU.
    let uuid_of: HashMap<i64, String> = dump_rows(&dump)
        .into_iter()
        .map(|(k, v)| (v["device_index"].as_i64().unwrap(), k))
        .collect();
    let newest = by_index.values().flatten().map(|s| s.0).max().unwrap();
    let (_, out) = run_dump(&dump, "nanogpt", |cfg| {
        cfg.health.min_data = Duration::from_secs(60);
    });
    let rows = read_table(&out.join("gpu_health_scores"));
    assert_eq!(rows.len(), 8);
    for (index, samples) in &by_index {
        let r = rows
            .iter()
            .find(|r| r["gpu_uuid"].s() == uuid_of[index])
            .unwrap();
        assert!(HEALTHY.contains(&grade(r)), "GPU {index}: {}", grade(r));
        assert_eq!(r["sample_count"].i(), Some(samples.len() as i64));
        let mut temps: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let mut power: Vec<f64> = samples.iter().map(|s| s.2).collect();
        temps.sort_by(f64::total_cmp);
        power.sort_by(f64::total_cmp);
        let p95 = |v: &[f64]| v[((0.95 * v.len() as f64).ceil() as usize).max(1) - 1];
        assert_eq!(r["gpu_temp_max"].f(), temps.last().copied());
        // Percentiles are histogram bins: 0.5 C and 2 W wide, lower edge.
        let t95 = r["gpu_temp_p95"].f().unwrap();
        assert!(
            t95 <= p95(&temps) && p95(&temps) < t95 + 0.5,
            "{t95} vs {}",
            p95(&temps)
        );
        let w95 = r["power_p95"].f().unwrap();
        assert!(
            w95 <= p95(&power) && p95(&power) < w95 + 2.0,
            "{w95} vs {}",
            p95(&power)
        );
        // Expected from the GPU's first sample to the input's newest; covered: each
        // sample up to twice the median spacing.
        let first = samples.iter().map(|s| s.0).min().unwrap();
        let span = (newest - first) as f64 / 1e6;
        assert!((r["expected_span_s"].f().unwrap() - span).abs() < 1e-6);
        let mut times: Vec<i64> = samples.iter().map(|s| s.0).collect();
        times.sort();
        times.dedup();
        let mut gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort();
        let median = gaps[(gaps.len() - 1) / 2];
        let interval = r["sample_interval_s"].f().unwrap();
        assert!(
            (interval / (median as f64 / 1e6) - 1.0).abs() < 0.1,
            "{interval} vs {median} us"
        );
        let cover = (2.0 * interval * 1e6) as i64;
        let naive: i64 = times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let next = times.get(i + 1).copied().unwrap_or(newest);
                (t + cover).min(next).min(newest) - t
            })
            .sum();
        let covered = r["covered_s"].f().unwrap();
        assert!(
            (covered - naive as f64 / 1e6).abs() < 1.0,
            "GPU {index}: covered {covered} s, naive {} s",
            naive as f64 / 1e6
        );
    }
}

/// The raw capture files through `import nvidia-smi`, each file on its own, then the
/// pipeline: every GPU grades good or better on what it reported, and its day's peak
/// temperature and power are the larger of the file's two query-gpu readings (found
/// here by a naive line scan, apart from the importer).
#[test]
fn imported_captures_grade_good_or_better_and_keep_their_readings() {
    use gpu_health::import::{NvidiaSmiOptions, import_nvidia_smi};
    let Some(dir) = shared("real-telemetry/nvidia-smi-captures") else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 10);
    for (i, file) in files.iter().enumerate() {
        // Naive: a query-gpu header starts with `timestamp,`, its data line follows.
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut readings: Vec<(f64, f64)> = Vec::new();
        for w in lines.windows(2) {
            if !w[0].starts_with("timestamp, driver_version") {
                continue;
            }
            let head: Vec<&str> = w[0].split(", ").collect();
            let vals: Vec<&str> = w[1].split(", ").collect();
            let at = |name: &str| {
                let i = head
                    .iter()
                    .position(|h| h.split(' ').next() == Some(name))
                    .unwrap();
                vals[i].split(' ').next().unwrap().parse::<f64>().unwrap()
            };
            readings.push((at("temperature.gpu"), at("power.draw")));
        }
        assert_eq!(readings.len(), 2, "{}: idle and load", file.display());
        let out = std::env::temp_dir().join(format!(
            "gpu-health-import-{}-{i}.jsonl",
            std::process::id()
        ));
        import_nvidia_smi(&NvidiaSmiOptions {
            files: vec![file.clone()],
            tz: None,
            hostname: None,
            query_gpu: None,
            partitions: 1,
            out: out.clone(),
        })
        .unwrap();
        let (report, dir) = run_dump(&out, &format!("import-{i}"), |cfg| {
            cfg.health.min_data = Duration::from_secs(1);
        });
        let _ = std::fs::remove_file(&out);
        assert_eq!(report.raw_rows, 2);
        let rows = read_table(&dir.join("gpu_health_scores"));
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert!(
            HEALTHY.contains(&grade(r)),
            "{}: {} {}",
            file.display(),
            grade(r),
            r["degradation_factors"].s()
        );
        let max_t = readings.iter().map(|r| r.0).fold(f64::MIN, f64::max);
        let max_w = readings.iter().map(|r| r.1).fold(f64::MIN, f64::max);
        assert_eq!(r["gpu_temp_max"].f(), Some(max_t));
        let p95 = r["power_p95"].f().unwrap();
        assert!(p95 <= max_w && max_w < p95 + 2.0, "{p95} vs {max_w}");
        // The capture carries its own power limit and maximum SM clock.
        assert!(
            r["limits_source"].s().contains("power=sample"),
            "{}",
            r["limits_source"].s()
        );
    }
}
