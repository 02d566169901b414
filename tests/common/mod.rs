//! Shared by the tests: runs the bundled fixture through the whole pipeline once per
//! test binary and reads the Parquet output back as plain rows; `db` has the database
//! helpers.
#![allow(dead_code)]

pub mod db;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use gpu_health::config::{DEMO_PIPELINE, PipelineConfig};
use gpu_health::generate::Manifest;
use gpu_health::pipeline::RunReport;

pub const FIXTURE: &str = "fixtures/fleet-16gpu-3d.jsonl.zst";

pub struct FixtureRun {
    pub report: RunReport,
    pub out: PathBuf,
    pub manifest: Manifest,
}

/// The fixture through the demo pipeline into a private Parquet directory.
pub fn fixture_run() -> &'static FixtureRun {
    static RUN: OnceLock<FixtureRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::env::temp_dir().join(format!(
            "gpu-health-test-{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("t")
                .replace("::", "_")
        ));
        let mut cfg = PipelineConfig::parse(DEMO_PIPELINE, "demo.toml").unwrap();
        cfg.source = gpu_health::config::SourceConfig::File {
            path: root.join(FIXTURE).display().to_string(),
            topic: "gpu-metrics-enriched".into(),
        };
        cfg.sink = gpu_health::config::SinkConfig::Parquet {
            path: out.display().to_string(),
            rows_per_file: 1_000_000,
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let report = rt.block_on(gpu_health::run_pipeline(cfg)).unwrap();
        let manifest_text =
            std::fs::read_to_string(root.join(format!("{FIXTURE}.manifest.json"))).unwrap();
        let manifest: Manifest = serde_json::from_str(&manifest_text).unwrap();
        FixtureRun {
            report,
            out,
            manifest,
        }
    })
}

/// Any dump through the demo pipeline (`tweak` adjusts its config) into a fresh Parquet
/// directory; returns the report and the directory. Call from a plain test (it runs
/// its own runtime).
pub fn run_dump(
    dump: &Path,
    name: &str,
    tweak: impl FnOnce(&mut PipelineConfig),
) -> (RunReport, PathBuf) {
    let out = std::env::temp_dir().join(format!("gpu-health-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cfg = PipelineConfig::parse(DEMO_PIPELINE, "demo.toml").unwrap();
    cfg.source = gpu_health::config::SourceConfig::File {
        path: dump.display().to_string(),
        topic: "gpu-metrics-enriched".into(),
    };
    cfg.sink = gpu_health::config::SinkConfig::Parquet {
        path: out.display().to_string(),
        rows_per_file: 1_000_000,
    };
    tweak(&mut cfg);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(gpu_health::run_pipeline(cfg)).unwrap();
    (report, out)
}

/// `../shared/<rel>` beside the repository, or `None` (with one line on stderr) where
/// the shared folder is absent, as on a machine with only the repository.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

/// A cell of a Parquet row, typed loosely for comparisons.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    I(i64),
    F(f64),
    S(String),
    B(bool),
}

impl Cell {
    pub fn f(&self) -> Option<f64> {
        match self {
            Cell::F(v) => Some(*v),
            Cell::I(v) => Some(*v as f64),
            _ => None,
        }
    }
    pub fn i(&self) -> Option<i64> {
        match self {
            Cell::I(v) => Some(*v),
            _ => None,
        }
    }
    pub fn s(&self) -> &str {
        match self {
            Cell::S(v) => v,
            _ => "",
        }
    }
}

/// All rows of a dataset as maps column -> cell.
pub fn read_table(dir: &Path) -> Vec<HashMap<String, Cell>> {
    let mut rows = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            push_rows(&batch.unwrap(), &mut rows);
        }
    }
    rows
}

fn push_rows(b: &RecordBatch, rows: &mut Vec<HashMap<String, Cell>>) {
    let schema = b.schema();
    for r in 0..b.num_rows() {
        let mut row = HashMap::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let col = b.column(i);
            let cell = if col.is_null(r) {
                Cell::Null
            } else {
                match field.data_type() {
                    DataType::Float64 => Cell::F(col.as_primitive::<Float64Type>().value(r)),
                    DataType::Int64 => Cell::I(col.as_primitive::<Int64Type>().value(r)),
                    DataType::Int32 => Cell::I(col.as_primitive::<Int32Type>().value(r) as i64),
                    DataType::Timestamp(_, _) => {
                        Cell::I(col.as_primitive::<TimestampMicrosecondType>().value(r))
                    }
                    DataType::Utf8 => Cell::S(col.as_string::<i32>().value(r).to_owned()),
                    DataType::Boolean => Cell::B(col.as_boolean().value(r)),
                    DataType::Binary => Cell::S(
                        String::from_utf8_lossy(col.as_binary::<i32>().value(r)).into_owned(),
                    ),
                    other => panic!("unexpected type {other}"),
                }
            };
            row.insert(field.name().clone(), cell);
        }
        rows.push(row);
    }
}

pub fn rfc3339_us(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_micros()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether every service variable in `vars` is set. A plain `cargo test` on a machine
/// without services skips the tests that need them with one line on stderr;
/// `scripts/test.sh` sets `GPU_HEALTH_TEST_SERVICES=required`, under which a missing
/// variable fails the test instead of skipping it.
pub fn services_present(test: &str, vars: &[&str]) -> bool {
    let missing: Vec<&str> = vars
        .iter()
        .copied()
        .filter(|v| std::env::var_os(v).is_none_or(|s| s.is_empty()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("GPU_HEALTH_TEST_SERVICES").is_ok_and(|v| v == "required");
    assert!(
        !required,
        "{test}: {} unset although GPU_HEALTH_TEST_SERVICES=required",
        missing.join(", ")
    );
    // Straight to stderr, past the test harness's capture, so that the skip shows.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: {} unset (scripts/test.sh starts TimescaleDB and a broker)",
        missing.join(", ")
    );
    false
}

/// Returns from the calling test when a service it needs is not configured (see
/// `services_present`).
#[macro_export]
macro_rules! require_services {
    ($test:ident: $($var:literal),+) => {
        if !common::services_present(stringify!($test), &[$($var),+]) {
            return;
        }
    };
}
