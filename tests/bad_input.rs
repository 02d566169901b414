//! Bad input: every kind injected into the fixture lands in the dead letters or in
//! soft validation with the right reason, and the books balance:
//! messages in = raw rows out + dead letters + counted duplicates.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::{fixture_run, read_table, rfc3339_us};

const HARD: [&str; 10] = [
    "not_json",
    "not_object",
    "too_large",
    "missing_gpu_uuid",
    "invalid_gpu_uuid",
    "missing_hostname",
    "missing_timestamp",
    "invalid_timestamp",
    "timestamp_too_old",
    "timestamp_in_future",
];

#[test]
fn books_balance() {
    let run = fixture_run();
    let r = &run.report;
    assert_eq!(r.messages, run.manifest.messages);
    assert!(r.books_balance(), "{r:?}");
    let raw = read_table(&run.out.join("gpu_metrics"));
    let dead = read_table(&run.out.join("dead_letters"));
    let hard = dead
        .iter()
        .filter(|d| d["reason"].s() != "too_late")
        .count() as u64;
    assert_eq!(
        raw.len() as u64 + hard + r.duplicates,
        run.manifest.messages
    );
    // Every real sample is a raw row, exactly once.
    assert_eq!(raw.len() as u64, run.manifest.samples);
    let keys: HashSet<_> = raw
        .iter()
        .map(|x| (x["gpu_uuid"].s().to_owned(), x["time"].i()))
        .collect();
    assert_eq!(
        keys.len(),
        raw.len(),
        "duplicate (gpu_uuid, time) in gpu_metrics"
    );
}

#[test]
fn hard_errors_are_dead_letters_with_their_reason() {
    let run = fixture_run();
    let dead = read_table(&run.out.join("dead_letters"));
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for d in &dead {
        *by_reason.entry(d["reason"].s().to_owned()).or_default() += 1;
        assert!(!d["detail"].s().is_empty());
    }
    for kind in HARD {
        let injected = run.manifest.injected.get(kind).copied().unwrap_or(0);
        assert!(injected > 0, "the fixture injects no {kind}");
        assert_eq!(
            by_reason.get(kind).copied().unwrap_or(0),
            injected,
            "{kind}"
        );
    }
    assert_eq!(run.report.duplicates, run.manifest.injected["duplicate"]);
}

#[test]
fn too_late_events_are_dead_lettered_and_kept_raw() {
    let run = fixture_run();
    let dead = read_table(&run.out.join("dead_letters"));
    let late: HashSet<(String, i64)> = dead
        .iter()
        .filter(|d| d["reason"].s() == "too_late")
        .map(|d| (d["gpu_uuid"].s().to_owned(), d["time"].i().unwrap()))
        .collect();
    let expected: HashSet<(String, i64)> = run
        .manifest
        .too_late
        .iter()
        .map(|t| (t.gpu_uuid.clone(), rfc3339_us(&t.time)))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(late, expected);
    let raw = read_table(&run.out.join("gpu_metrics"));
    let raw_keys: HashSet<_> = raw
        .iter()
        .map(|x| (x["gpu_uuid"].s().to_owned(), x["time"].i().unwrap()))
        .collect();
    assert!(expected.is_subset(&raw_keys));
}

#[test]
fn soft_errors_null_the_field_and_flag_the_row() {
    let run = fixture_run();
    let raw = read_table(&run.out.join("gpu_metrics"));
    let index: HashMap<(String, i64), &HashMap<String, common::Cell>> = raw
        .iter()
        .map(|x| ((x["gpu_uuid"].s().to_owned(), x["time"].i().unwrap()), x))
        .collect();
    assert!(run.manifest.soft.len() >= 15);
    for s in &run.manifest.soft {
        let row = index
            .get(&(s.gpu_uuid.clone(), rfc3339_us(&s.time)))
            .unwrap_or_else(|| panic!("soft-spoiled sample {s:?} missing from gpu_metrics"));
        assert_eq!(row[&s.field], common::Cell::Null, "{s:?}");
        assert_eq!(row["validation_passed"], common::Cell::B(false), "{s:?}");
        let errors = row["validation_errors"].s();
        assert!(
            errors.contains(&format!("{}:{}", s.field, s.kind)),
            "{s:?}: {errors}"
        );
    }
    let flagged = raw
        .iter()
        .filter(|x| x["validation_passed"] == common::Cell::B(false))
        .count();
    assert_eq!(flagged, run.manifest.soft.len());
}
