//! Bad input: every kind injected into the fixture lands in the dead letters or in
//! soft validation with the right reason, and the books balance:
//! messages in = raw rows out + dead letters + counted duplicates.
//! The hostile corpus (every class of DESIGN 2.2 and the valid-but-hostile JSON of
//! issue 12) goes through the real TimescaleDB sink: each message ends as a raw row
//! (cleaned), a row with NULLed metrics, or a dead letter with the reason the case
//! names, worked out by hand here.

#[macro_use]
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

/// How a corpus message must end.
enum Ends {
    /// A raw row at its time whose `validation_errors` holds each of these (none: the
    /// row passed), and whose columns hold these values.
    Raw(
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ),
    /// A dead letter with this reason.
    Dead(&'static str),
    /// A counted duplicate of the case before it.
    Duplicate,
}

/// One hostile message: its value (`{T}`: its time in epoch ms, `{G}`: a GPU UUID of
/// its own) and how it must end.
fn corpus() -> Vec<(String, Vec<u8>, Ends)> {
    use Ends::*;
    let flat =
        |extra: &str| format!(r#"{{"time":{{T}},"gpu_uuid":"{{G}}","hostname":"h1"{extra}}}"#);
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let mut cases: Vec<(String, Vec<u8>, Ends)> = vec![
        // DESIGN 2.2, hard.
        ("not_json".into(), b"{oops".to_vec(), Dead("not_json")),
        ("not_object".into(), b"[1,2]".to_vec(), Dead("not_object")),
        ("string".into(), br#""GPU-12345678""#.to_vec(), Dead("not_object")),
        ("null".into(), b"null".to_vec(), Dead("not_object")),
        ("empty".into(), Vec::new(), Dead("not_json")),
        ("blank".into(), b" \r\n ".to_vec(), Dead("not_json")),
        ("too_large".into(), flat(&format!(r#","pad":"{}""#, "x".repeat(1_100_000))).into_bytes(), Dead("too_large")),
        ("no_uuid".into(), br#"{"time":{T},"hostname":"h1"}"#.to_vec(), Dead("missing_gpu_uuid")),
        ("empty_object".into(), b"{}".to_vec(), Dead("missing_gpu_uuid")),
        ("bad_uuid".into(), br#"{"time":{T},"gpu_uuid":"gpu0","hostname":"h1"}"#.to_vec(), Dead("invalid_gpu_uuid")),
        ("nul_uuid".into(), br#"{"time":{T},"gpu_uuid":"GPU-\u0000","hostname":"h1"}"#.to_vec(), Dead("invalid_gpu_uuid")),
        ("no_host".into(), br#"{"time":{T},"gpu_uuid":"{G}"}"#.to_vec(), Dead("missing_hostname")),
        ("nul_host".into(), br#"{"time":{T},"gpu_uuid":"{G}","hostname":"\u0000"}"#.to_vec(), Dead("invalid_hostname")),
        ("no_time".into(), br#"{"gpu_uuid":"{G}","hostname":"h1"}"#.to_vec(), Dead("missing_timestamp")),
        ("bad_time".into(), br#"{"time":"soon","gpu_uuid":"{G}","hostname":"h1"}"#.to_vec(), Dead("invalid_timestamp")),
        ("old_time".into(), br#"{"time":"1999-12-31T23:59:59Z","gpu_uuid":"{G}","hostname":"h1"}"#.to_vec(), Dead("timestamp_too_old")),
        ("future_time".into(), br#"{"time":"2099-01-01T00:00:00Z","gpu_uuid":"{G}","hostname":"h1"}"#.to_vec(), Dead("timestamp_in_future")),
        ("connect_payload_not_a_row".into(), br#"{"schema":{},"payload":5}"#.to_vec(), Dead("malformed")),
        // Numbers JSON allows and an f64 does not hold.
        ("1e400".into(), flat(r#","gpu_temp":1e400"#).into_bytes(), Dead("not_json")),
        // 1,000-deep nesting: skipped where nobody reads it, a wrong type where a
        // metric or a section was expected.
        ("deep_unknown".into(), flat(&format!(r#","x":{deep}"#)).into_bytes(), Raw(&[], &[])),
        ("deep_metric".into(), flat(&format!(r#","gpu_temp":{deep}"#)).into_bytes(), Raw(&["gpu_temp:wrong_type"], &[])),
        // DESIGN 2.2, soft.
        ("wrong_type".into(), flat(r#","gpu_temp":"hot""#).into_bytes(), Raw(&["gpu_temp:wrong_type"], &[])),
        ("nan".into(), flat(r#","gpu_temp":"NaN""#).into_bytes(), Raw(&["gpu_temp:not_finite"], &[])),
        ("hot".into(), flat(r#","gpu_temp":500"#).into_bytes(), Raw(&["gpu_temp:out_of_range"], &[])),
        ("ratio".into(), flat(r#","sm_active":1.5"#).into_bytes(), Raw(&["sm_active:out_of_range"], &[])),
        ("negative_counter".into(), flat(r#","ecc_sbe_aggregate":-1"#).into_bytes(), Raw(&["ecc_sbe_aggregate:out_of_range"], &[])),
        ("beyond_i64".into(), flat(r#","ecc_sbe_aggregate":99999999999999999999"#).into_bytes(), Raw(&["ecc_sbe_aggregate:out_of_range"], &[])),
        ("below_i64".into(), flat(r#","power_usage":-9223372036854775809"#).into_bytes(), Raw(&["power_usage:out_of_range"], &[])),
        ("minus_zero".into(), flat(r#","gpu_temp":-0"#).into_bytes(), Raw(&[], &[])),
        ("duplicate_keys".into(), flat(r#","gpu_temp":50,"gpu_temp":60"#).into_bytes(), Raw(&[], &[("gpu_temp", "60")])),
        ("bom".into(), [&b"\xEF\xBB\xBF"[..], flat("").as_bytes()].concat(), Raw(&[], &[])),
        ("crlf".into(), flat(",\r\n\"gpu_temp\":51\r\n").into_bytes(), Raw(&[], &[("gpu_temp", "51")])),
        // Text the database would refuse, in every text field.
        ("nul_rack_nested".into(), br#"{"timestamp":{T},"gpu":{"gpu_uuid":"{G}"},"host":{"hostname":"h1","rack_id":"r0\u00001"}}"#.to_vec(), Raw(&["rack_id:control_chars"], &[("rack_id", "r01")])),
        ("nul_uuid_tail".into(), br#"{"time":{T},"gpu_uuid":"{G}\u0000","hostname":"h1"}"#.to_vec(), Raw(&["gpu_uuid:control_chars"], &[])),
        ("nul_host_inside".into(), br#"{"time":{T},"gpu_uuid":"{G}","hostname":"h\u00001"}"#.to_vec(), Raw(&["hostname:control_chars"], &[("hostname", "h1")])),
        ("lone_high_surrogate".into(), flat(r#","rack_id":"r\ud800""#).into_bytes(), Raw(&["message:invalid_unicode"], &[("rack_id", "r\u{fffd}")])),
        ("lone_low_surrogate".into(), flat(r#","gpu_model":"\udc00H100""#).into_bytes(), Raw(&["message:invalid_unicode"], &[("gpu_model", "\u{fffd}H100")])),
        ("not_utf8".into(), [flat(r#","rack_id":"r"#).trim_end_matches('}').as_bytes(), b"\xff\xfe\"}"].concat(), Raw(&["message:invalid_unicode"], &[("rack_id", "r\u{fffd}\u{fffd}")])),
        ("long_rack".into(), flat(&format!(r#","rack_id":"{}""#, "r".repeat(900_000))).into_bytes(), Raw(&["rack_id:too_long"], &[])),
        // Sections of the wrong kind.
        ("null_section".into(), br#"{"timestamp":{T},"gpu":{"gpu_uuid":"{G}"},"host":{"hostname":"h1"},"metrics":{"health":null,"memory":{"fb_used_mib":1}}}"#.to_vec(), Raw(&["health:wrong_type"], &[("fb_used_bytes", "1048576")])),
        ("array_section".into(), br#"{"timestamp":{T},"gpu":{"gpu_uuid":"{G}"},"host":{"hostname":"h1"},"metrics":{"memory":[1,2]}}"#.to_vec(), Raw(&["memory:wrong_type"], &[])),
        ("string_section".into(), br#"{"timestamp":{T},"gpu":{"gpu_uuid":"{G}"},"host":{"hostname":"h1"},"metrics":{"pcie":"x","clocks":{"sm_clock_mhz":1500}}}"#.to_vec(), Raw(&["pcie:wrong_type"], &[("sm_clock_mhz", "1500")])),
        ("null_metrics".into(), br#"{"timestamp":{T},"gpu":{"gpu_uuid":"{G}"},"host":{"hostname":"h1"},"metrics":null}"#.to_vec(), Raw(&["metrics:wrong_type"], &[])),
        ("null_gpu".into(), br#"{"timestamp":{T},"gpu":null,"host":{"hostname":"h1"}}"#.to_vec(), Dead("missing_gpu_uuid")),
        ("good".into(), flat(r#","gpu_temp":55"#).into_bytes(), Raw(&[], &[("gpu_temp", "55")])),
    ];
    for field in [
        "pci_bus_id",
        "gpu_model",
        "rack_id",
        "cluster_id",
        "datacenter",
    ] {
        for (what, ch) in [
            ("nul", "\\u0000"),
            ("bell", "\\u0007"),
            ("escape", "\\u001b"),
            ("del", "\\u007f"),
            ("c1", "\\u0085"),
        ] {
            cases.push((
                format!("{what}_{field}"),
                flat(&format!(r#","{field}":"a{ch}b""#)).into_bytes(),
                Raw(
                    match field {
                        "pci_bus_id" => &["pci_bus_id:control_chars"],
                        "gpu_model" => &["gpu_model:control_chars"],
                        "rack_id" => &["rack_id:control_chars"],
                        "cluster_id" => &["cluster_id:control_chars"],
                        _ => &["datacenter:control_chars"],
                    },
                    &[],
                ),
            ));
        }
    }
    // The same (time, GPU) twice: the first wins.
    let dup = flat(r#","gpu_temp":70"#).into_bytes();
    cases.push(("first".into(), dup.clone(), Raw(&[], &[("gpu_temp", "70")])));
    cases.push(("again".into(), dup, Duplicate));
    cases
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hostile_corpus_ends_as_rows_or_dead_letters_in_timescaledb() {
    require_services!(the_hostile_corpus_ends_as_rows_or_dead_letters_in_timescaledb: "DATABASE_URL");
    let t0: i64 = 1_790_000_000_000; // 2026-09-21T14:13:20Z, epoch ms
    let cases = corpus();
    let dir = std::env::temp_dir().join(format!("gpu-health-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dump = dir.join("corpus.jsonl");
    let mut lines = String::new();
    let mut times = Vec::new();
    for (i, (_, value, ends)) in cases.iter().enumerate() {
        // A duplicate repeats the time and GPU of the case before it.
        let k = if matches!(ends, Ends::Duplicate) {
            i - 1
        } else {
            i
        };
        let (t, g) = (
            t0 + k as i64 * 10_000,
            format!("GPU-c0c0c0c0-0000-0000-0000-{k:012}"),
        );
        times.push(t);
        let filled: Vec<u8> = replace(
            &replace(value, b"{T}", t.to_string().as_bytes()),
            b"{G}",
            g.as_bytes(),
        );
        let rec = gpu_health::dump::DumpRecord::new(Some(&g), 0, &filled);
        lines.push_str(&serde_json::to_string(&rec).unwrap());
        lines.push('\n');
    }
    std::fs::write(&dump, lines).unwrap();
    let (url, c) = common::db::fresh_db("t_corpus").await;
    let mut cfg = common::db::fixture_pipeline("corpus");
    cfg.source = gpu_health::config::SourceConfig::File {
        path: dump.display().to_string(),
        topic: "corpus".into(),
    };
    let report = common::db::run_into(&url, cfg).await;
    assert_eq!(report.messages, cases.len() as u64);
    assert!(report.books_balance(), "{report:?}");
    let mut dead_expected = 0;
    for (i, (name, _, ends)) in cases.iter().enumerate() {
        let letter = c
            .query_opt(
                "SELECT reason FROM gpu_metrics_dead_letters WHERE topic = 'corpus' AND \"offset\" = $1 AND reason <> 'too_late'",
                &[&(i as i64)],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, String>(0));
        let at = chrono::DateTime::from_timestamp_millis(times[i]).unwrap();
        let rows = c
            .query(
                "SELECT validation_errors, row_to_json(g)::jsonb FROM gpu_metrics g WHERE time = $1",
                &[&at],
            )
            .await
            .unwrap();
        match ends {
            Ends::Dead(reason) => {
                dead_expected += 1;
                assert_eq!(letter.as_deref(), Some(*reason), "{name}");
                assert!(rows.is_empty(), "{name}: a dead letter is no raw row");
            }
            Ends::Duplicate => {
                assert_eq!(letter, None, "{name}");
                assert_eq!(rows.len(), 1, "{name}: counted once");
            }
            Ends::Raw(errors, values) => {
                assert_eq!(letter, None, "{name}");
                assert_eq!(rows.len(), 1, "{name}: one raw row");
                let got: Option<String> = rows[0].get(0);
                let row: serde_json::Value = rows[0].get(1);
                let got = got.unwrap_or_default();
                for e in *errors {
                    assert!(
                        got.split(';').any(|x| x == *e),
                        "{name}: {e} not in {got:?}"
                    );
                }
                if errors.is_empty() {
                    assert_eq!(got, "", "{name}: no validation error");
                }
                for (col, want) in *values {
                    let v = &row[*col];
                    let v = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    assert_eq!(&v, want, "{name}: {col}");
                }
                for col in [
                    "gpu_uuid",
                    "hostname",
                    "pci_bus_id",
                    "gpu_model",
                    "rack_id",
                    "cluster_id",
                    "datacenter",
                ] {
                    let v = row[col].as_str().unwrap_or_default();
                    assert!(v.len() <= 256, "{name}: {col} is {} bytes", v.len());
                    assert!(
                        !v.chars().any(char::is_control),
                        "{name}: {col} holds a control character"
                    );
                }
            }
        }
    }
    assert_eq!(report.hard_dead_letters(), dead_expected);
    assert_eq!(report.duplicates, 1);
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}
