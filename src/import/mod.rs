//! Import: logs users already have (nvidia-smi `--query-gpu` CSV, dcgm-exporter text,
//! any CSV with a column map) -> topic dumps of flat rows (DESIGN 2.1 b).
//!
//! This file owns what the three readers share: the flat row (`Row`) and its JSON form,
//! time zones and time parsing, stable UUIDs for GPUs whose UUID is masked or missing,
//! the dump output (key = GPU UUID, partition = Kafka's murmur2 choice) and the summary
//! printed at the end (rows, GPUs, first/last time, skipped lines by reason). The
//! readers, `nvidia_smi`, `dcgm` and `mapped_csv`, only turn text into `Row`s.

mod dcgm;
mod mapped_csv;
mod nvidia_smi;

pub use dcgm::{DcgmOptions, import_dcgm};
pub use mapped_csv::{CsvOptions, import_csv, parse_map};
pub use nvidia_smi::{NvidiaSmiOptions, import_nvidia_smi};

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::dump::{DumpRecord, DumpWriter, kafka_partition};
use crate::event::schema::{Kind, METRICS};

/// Bytes per MiB: nvidia-smi and DCGM report frame-buffer sizes in MiB, the flat row
/// carries bytes (DESIGN 2.1).
pub(crate) const MIB: f64 = 1_048_576.0;

/// The zone that local times without an offset are read in (`--tz`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Utc,
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `UTC`, `Z`, a fixed offset (`+02:00`, `-0530`) or an IANA name (`Europe/Berlin`).
    pub fn parse(text: &str) -> Result<Zone> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(Zone::Utc);
        }
        if t.starts_with('+') || t.starts_with('-') {
            let digits: String = t[1..].chars().filter(|c| *c != ':').collect();
            let (h, m) = match digits.len() {
                _ if !digits.bytes().all(|b| b.is_ascii_digit()) => (None, None),
                2 => (digits.parse::<i32>().ok(), Some(0)),
                4 => (
                    digits[..2].parse::<i32>().ok(),
                    digits[2..].parse::<i32>().ok(),
                ),
                _ => (None, None),
            };
            let secs = match (h, m) {
                (Some(h), Some(m)) if h <= 23 && m <= 59 => h * 3600 + m * 60,
                _ => bail!("--tz {t:?}: expected an offset like +02:00 or -0530"),
            };
            let secs = if t.starts_with('-') { -secs } else { secs };
            return FixedOffset::east_opt(secs)
                .map(Zone::Fixed)
                .with_context(|| format!("--tz {t:?}: offset out of range"));
        }
        chrono_tz::Tz::from_str(t).map(Zone::Named).map_err(|_| {
            anyhow::anyhow!(
                "--tz {t:?}: not a time zone; expected an IANA name (Europe/Berlin), \
                 an offset (+02:00) or UTC"
            )
        })
    }

    /// The instant of a local wall-clock time in this zone. In a daylight-saving fold
    /// the earlier instant is taken; a time in a daylight-saving gap does not exist.
    pub(crate) fn to_utc(self, local: NaiveDateTime) -> Result<DateTime<Utc>, &'static str> {
        fn pick<T: TimeZone>(r: LocalResult<DateTime<T>>) -> Result<DateTime<Utc>, &'static str> {
            match r {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.with_timezone(&Utc)),
                LocalResult::None => Err("local time does not exist in --tz (DST gap)"),
            }
        }
        match self {
            Zone::Utc => Ok(Utc.from_utc_datetime(&local)),
            Zone::Fixed(o) => pick(o.from_local_datetime(&local)),
            Zone::Named(z) => pick(z.from_local_datetime(&local)),
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Utc => f.write_str("UTC"),
            Zone::Fixed(o) => write!(f, "{o}"),
            Zone::Named(z) => write!(f, "{}", z.name()),
        }
    }
}

/// Local formats without a zone: nvidia-smi's `YYYY/MM/DD HH:MM:SS.mmm`, and the ISO
/// forms that loggers write.
const LOCAL_FORMATS: &[&str] = &[
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
];

/// Reads a time: RFC 3339 with its own offset, integer or decimal epoch seconds or
/// milliseconds, or a local time in `zone`.
pub(crate) fn parse_time(text: &str, zone: &Zone) -> Result<DateTime<Utc>, &'static str> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&Utc));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let n: f64 = t.parse().map_err(|_| "not a time")?;
        // 1e11 s is the year 5138 and 1e11 ms is 1973: above it, milliseconds.
        let ms = if n >= 1e11 { n } else { n * 1000.0 };
        return DateTime::from_timestamp_millis(ms.round() as i64).ok_or("time out of range");
    }
    for f in LOCAL_FORMATS {
        if let Ok(local) = NaiveDateTime::parse_from_str(t, f) {
            return zone.to_utc(local);
        }
    }
    Err("not a time (expected RFC 3339, epoch, or YYYY/MM/DD HH:MM:SS.mmm)")
}

/// RFC 3339, UTC, millisecond precision: `2026-07-03T20:10:46.109Z`.
pub(crate) fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A metric value before it is typed by its column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val {
    Num(f64),
    Bool(bool),
}

/// One flat row: identity fields and metric values by `METRICS` index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub time: DateTime<Utc>,
    pub gpu_uuid: String,
    pub hostname: String,
    pub pci_bus_id: Option<String>,
    pub device_index: Option<i64>,
    pub gpu_model: Option<String>,
    pub metrics: Vec<Option<Val>>,
}

impl Row {
    pub(crate) fn new(time: DateTime<Utc>) -> Row {
        Row {
            time,
            gpu_uuid: String::new(),
            hostname: String::new(),
            pci_bus_id: None,
            device_index: None,
            gpu_model: None,
            metrics: vec![None; METRICS.len()],
        }
    }

    /// Sets a metric column by its flat name (a name from `METRICS`).
    pub(crate) fn set(&mut self, column: &str, v: Val) {
        if let Some(i) = metric_position(column) {
            self.metrics[i] = Some(v);
        }
    }

    pub(crate) fn get(&self, column: &str) -> Option<Val> {
        metric_position(column).and_then(|i| self.metrics[i])
    }

    #[cfg(test)]
    pub(crate) fn num(&self, column: &str) -> Option<f64> {
        match self.get(column) {
            Some(Val::Num(n)) => Some(n),
            _ => None,
        }
    }

    /// The flat JSON row: contract column names, time as RFC 3339 UTC (ms), integer
    /// columns as JSON integers, boolean columns as JSON booleans.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("time".into(), Value::String(format_time(&self.time)));
        m.insert("gpu_uuid".into(), Value::String(self.gpu_uuid.clone()));
        m.insert("hostname".into(), Value::String(self.hostname.clone()));
        if let Some(b) = &self.pci_bus_id {
            m.insert("pci_bus_id".into(), Value::String(b.clone()));
        }
        if let Some(i) = self.device_index {
            m.insert("device_index".into(), Value::from(i));
        }
        if let Some(g) = &self.gpu_model {
            m.insert("gpu_model".into(), Value::String(g.clone()));
        }
        for (col, v) in METRICS.iter().zip(&self.metrics) {
            let json = match (col.kind, v) {
                (_, None) => continue,
                (Kind::Bool, Some(Val::Bool(b))) => Value::Bool(*b),
                (Kind::Bool, Some(Val::Num(n))) => Value::Bool(*n != 0.0),
                (Kind::Int, Some(Val::Num(n))) if n.is_finite() => Value::from(n.round() as i64),
                (Kind::Float, Some(Val::Num(n))) => match serde_json::Number::from_f64(*n) {
                    Some(n) => Value::Number(n),
                    None => continue,
                },
                (Kind::Int | Kind::Float, Some(Val::Bool(b))) => Value::from(i64::from(*b)),
                (Kind::Int, Some(Val::Num(_))) => continue,
            };
            m.insert(col.name.into(), json);
        }
        Value::Object(m)
    }
}

fn metric_position(column: &str) -> Option<usize> {
    METRICS.iter().position(|m| m.name == column)
}

/// Whether a flat column name is one of the contract's (identity or metric).
pub(crate) fn is_flat_column(name: &str) -> bool {
    matches!(
        name,
        "time" | "gpu_uuid" | "hostname" | "pci_bus_id" | "device_index" | "gpu_model"
    ) || metric_position(name).is_some()
}

/// A UUID that carries no identity: absent, or masked to zeros
/// (`GPU-00000000-0000-0000-0000-000000000000`, as in shared captures).
pub(crate) fn is_masked_uuid(uuid: &str) -> bool {
    let body = uuid
        .trim()
        .trim_start_matches("GPU-")
        .trim_start_matches("MIG-");
    body.chars().all(|c| c == '0' || c == '-')
}

/// A stable UUID for a GPU without one: SHA-256 of (hostname, locator), where the
/// locator is the PCI bus id or the device index, laid out like NVML's
/// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub(crate) fn derive_uuid(hostname: &str, locator: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"gpu-health import\0");
    h.update(hostname.as_bytes());
    h.update(b"\0");
    h.update(locator.as_bytes());
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A host name from a file name: lowercase, `[a-z0-9.-]` only (other characters become
/// `-`, runs of `-` collapse), so that each capture file is its own host.
pub(crate) fn hostname_from_path(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem
        .strip_suffix(".txt")
        .or_else(|| stem.strip_suffix(".csv"))
        .or_else(|| stem.strip_suffix(".prom"))
        .unwrap_or(&stem)
        .to_lowercase();
    let mut out = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let out = out.trim_matches(|c| c == '-' || c == '.').to_owned();
    if out.is_empty() {
        "unknown-host".into()
    } else {
        out
    }
}

/// Reads a file as text, line endings and invalid UTF-8 tolerated (captures carry
/// terminal escapes and Windows line ends).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// What an import did: printed to stderr at the end.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub files: usize,
    pub rows: usize,
    /// GPU UUID -> (hostname, model, rows).
    pub gpus: BTreeMap<String, (String, Option<String>, usize)>,
    /// GPUs whose UUID was derived (masked or missing in the input).
    pub uuids_derived: HashSet<String>,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// Lines (or fields, where the reason says so) left out, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Assumptions the user should know about (the zone of local times, ...).
    pub notes: Vec<String>,
    pub out: String,
    pub partitions: i32,
}

impl ImportSummary {
    pub(crate) fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
    }

    pub(crate) fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "imported {} rows from {} file(s) into {} ({} partitions)",
            self.rows, self.files, self.out, self.partitions
        )?;
        writeln!(
            f,
            "GPUs: {} ({} with a derived UUID)",
            self.gpus.len(),
            self.uuids_derived.len()
        )?;
        const LISTED: usize = 16;
        for (uuid, (host, model, rows)) in self.gpus.iter().take(LISTED) {
            let derived = if self.uuids_derived.contains(uuid) {
                " (derived)"
            } else {
                ""
            };
            writeln!(
                f,
                "  {uuid}{derived}  {host}  {}  {rows} rows",
                model.as_deref().unwrap_or("model unknown")
            )?;
        }
        if self.gpus.len() > LISTED {
            writeln!(f, "  ... and {} more", self.gpus.len() - LISTED)?;
        }
        match (&self.first, &self.last) {
            (Some(a), Some(b)) => writeln!(f, "time: {} .. {}", format_time(a), format_time(b))?,
            _ => writeln!(f, "time: no rows")?,
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if self.skipped.is_empty() {
            writeln!(f, "skipped: nothing")?;
        } else {
            writeln!(f, "skipped:")?;
            for (reason, n) in &self.skipped {
                writeln!(f, "  {n:>8}  {reason}")?;
            }
        }
        Ok(())
    }
}

/// The dump being written and the summary of what went in. Rows are held until
/// `finish` and written in time order (stable, so a file's own order is kept for equal
/// times): files of different hosts or days arrive in any order, and the pipeline's
/// watermark would otherwise refuse the earlier ones as too late for rollups.
pub(crate) struct Output {
    writer: DumpWriter,
    rows: Vec<Row>,
    pub summary: ImportSummary,
}

impl Output {
    pub(crate) fn create(path: &Path, partitions: i32) -> Result<Output> {
        if partitions < 1 {
            bail!("--partitions {partitions}: expected at least 1");
        }
        let writer = DumpWriter::create(path)?;
        Ok(Output {
            writer,
            rows: Vec::new(),
            summary: ImportSummary {
                out: path.display().to_string(),
                partitions,
                ..ImportSummary::default()
            },
        })
    }

    /// Takes one row for the dump and counts it.
    fn write(&mut self, row: Row) {
        let s = &mut self.summary;
        s.rows += 1;
        let entry = s
            .gpus
            .entry(row.gpu_uuid.clone())
            .or_insert_with(|| (row.hostname.clone(), None, 0));
        entry.2 += 1;
        if entry.1.is_none() {
            entry.1.clone_from(&row.gpu_model);
        }
        s.first = Some(s.first.map_or(row.time, |t| t.min(row.time)));
        s.last = Some(s.last.map_or(row.time, |t| t.max(row.time)));
        self.rows.push(row);
    }

    /// Takes one file's rows and counts the file.
    pub(crate) fn add_file(&mut self, rows: Vec<Row>) {
        for row in rows {
            self.write(row);
        }
        self.summary.files += 1;
    }

    /// Writes the rows in time order as dump records (key = GPU UUID, Kafka's
    /// partition for it) and closes the dump.
    pub(crate) fn finish(mut self) -> Result<ImportSummary> {
        self.rows.sort_by_key(|r| r.time);
        for row in &self.rows {
            let key = row.gpu_uuid.as_str();
            let partition = kafka_partition(key.as_bytes(), self.summary.partitions);
            let value = serde_json::to_vec(&row.to_json())?;
            self.writer
                .write(&DumpRecord::new(Some(key), partition, &value))
                .with_context(|| format!("writing {}", self.summary.out))?;
        }
        self.writer
            .finish()
            .with_context(|| format!("finishing {}", self.summary.out))?;
        Ok(self.summary)
    }
}

/// A number as nvidia-smi and loggers print it: the first token (units such as `W`,
/// `MiB`, `%` after a space are dropped), decimal or `0x` hex.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let token = text.split_whitespace().next()?;
    let token = token.trim_end_matches('%');
    if let Some(hex) = token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))
    {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    token.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `Yes`/`No`, `true`/`false`, `1`/`0`.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the readers' tests: where the shared real telemetry lives.
    use std::path::PathBuf;

    /// `../shared/real-telemetry/<rel>` beside the checkout, or None (with a note) when
    /// the shared folder is absent.
    pub(crate) fn real(rel: &str) -> Option<PathBuf> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/real-telemetry")
            .join(rel);
        if p.exists() {
            Some(p)
        } else {
            eprintln!("skipped: {} is absent", p.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_convert_local_nvidia_smi_time() {
        for tz in ["Europe/Berlin", "+02:00", "+0200"] {
            let z = Zone::parse(tz).unwrap();
            let t = parse_time("2026/07/03 22:10:46.109", &z).unwrap();
            assert_eq!(format_time(&t), "2026-07-03T20:10:46.109Z", "{tz}");
        }
        let t = parse_time("2026/07/03 22:10:46.109", &Zone::Utc).unwrap();
        assert_eq!(format_time(&t), "2026-07-03T22:10:46.109Z");
        // An explicit offset wins over --tz.
        let z = Zone::parse("-05:00").unwrap();
        let t = parse_time("2025-09-24T03:17:04.490Z", &z).unwrap();
        assert_eq!(format_time(&t), "2025-09-24T03:17:04.490Z");
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert!(Zone::parse("+25:00").is_err());
        assert!(parse_time("yesterday", &Zone::Utc).is_err());
        // 02:30 on the spring-forward night does not exist in Berlin.
        let z = Zone::parse("Europe/Berlin").unwrap();
        assert!(parse_time("2026/03/29 02:30:00.000", &z).is_err());
    }

    #[test]
    fn epoch_times_in_seconds_or_milliseconds() {
        let a = parse_time("1782511786", &Zone::Utc).unwrap();
        let b = parse_time("1782511786000", &Zone::Utc).unwrap();
        assert_eq!(a, b);
        assert_eq!(format_time(&a), "2026-06-26T22:09:46.000Z");
    }

    #[test]
    fn derived_uuids_are_stable_distinct_and_shaped_like_nvml() {
        let a = derive_uuid("host-a", "00000000:01:00.0");
        assert_eq!(a, derive_uuid("host-a", "00000000:01:00.0"));
        assert_ne!(a, derive_uuid("host-b", "00000000:01:00.0"));
        assert_ne!(a, derive_uuid("host-a", "00000000:02:00.0"));
        let parts: Vec<usize> = a
            .trim_start_matches("GPU-")
            .split('-')
            .map(str::len)
            .collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(a.starts_with("GPU-"));
        assert!(is_masked_uuid("GPU-00000000-0000-0000-0000-000000000000"));
        assert!(is_masked_uuid(""));
        assert!(!is_masked_uuid(&a));
    }

    #[test]
    fn numbers_lose_their_units() {
        assert_eq!(parse_number("77.71 W"), Some(77.71));
        assert_eq!(parse_number("143771 MiB"), Some(143771.0));
        assert_eq!(parse_number("0 %"), Some(0.0));
        assert_eq!(parse_number("100.00 %"), Some(100.0));
        assert_eq!(parse_number("0x0000000000000001"), Some(1.0));
        assert_eq!(parse_number("Active"), None);
        assert_eq!(parse_number("NaN"), None);
    }

    #[test]
    fn host_names_from_capture_file_names() {
        let p = Path::new("/x/windows-x86_64__nvidia-geforce-rtx-2080-super__591.86.txt");
        assert_eq!(
            hostname_from_path(p),
            "windows-x86-64-nvidia-geforce-rtx-2080-super-591.86"
        );
    }

    #[test]
    fn the_dump_is_keyed_by_uuid_partitioned_like_kafka_and_in_time_order() {
        let path = std::env::temp_dir().join(format!(
            "gpu-health-import-test-{}.jsonl.gz",
            std::process::id()
        ));
        let mut out = Output::create(&path, 4).unwrap();
        for (uuid, t) in [
            ("GPU-b", "2026-07-03T20:10:47.000Z"),
            ("GPU-a", "2026-07-03T20:10:46.000Z"),
        ] {
            let mut r = Row::new(parse_time(t, &Zone::Utc).unwrap());
            r.gpu_uuid = uuid.into();
            r.hostname = "h".into();
            out.write(r);
        }
        let summary = out.finish().unwrap();
        assert_eq!(summary.rows, 2);
        let lines: Vec<String> = std::io::BufRead::lines(crate::dump::open_dump(&path).unwrap())
            .map(Result::unwrap)
            .collect();
        std::fs::remove_file(&path).unwrap();
        let recs: Vec<DumpRecord> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs[0].key.as_deref(), Some("GPU-a"));
        assert_eq!(recs[1].key.as_deref(), Some("GPU-b"));
        for r in &recs {
            let key = r.key.as_deref().unwrap();
            assert_eq!(r.partition, kafka_partition(key.as_bytes(), 4));
            let v: Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
            assert_eq!(v["gpu_uuid"], key);
        }
    }

    #[test]
    fn rows_serialise_with_contract_types() {
        let t = parse_time("2026-07-03T20:10:46.109Z", &Zone::Utc).unwrap();
        let mut r = Row::new(t);
        r.gpu_uuid = "GPU-1".into();
        r.hostname = "h".into();
        r.set("gpu_temp", Val::Num(41.0));
        r.set("sm_clock_mhz", Val::Num(1980.0));
        r.set("row_remap_pending", Val::Bool(false));
        r.set("no_such_column", Val::Num(1.0));
        let v = r.to_json();
        assert_eq!(v["time"], "2026-07-03T20:10:46.109Z");
        assert!(v["gpu_temp"].is_f64());
        assert!(v["sm_clock_mhz"].is_i64());
        assert_eq!(v["row_remap_pending"], false);
        assert!(v.get("no_such_column").is_none());
    }
}
