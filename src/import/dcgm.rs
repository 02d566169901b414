//! dcgm-exporter's Prometheus text exposition -> flat rows, one per (GPU, time).
//!
//! Owns the sample-line parser (metric name, labels with `\"`, `\\`, `\n` escapes, value,
//! optional timestamp in ms), the metric map (DCGM field names -> contract columns, with
//! units from `dcgm_fields.h`), DCGM's blank sentinels, and grouping: one scrape, or a
//! concatenation of scrapes whose samples carry timestamps. A hand-written parser
//! because `prometheus-parse` (0.2.5) fills a missing timestamp itself, so a sample
//! without one could not take `--at`, and its label pattern stops at the first `}`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::{
    ImportSummary, MIB, Output, Row, Val, derive_uuid, format_time, hostname_from_path,
    is_masked_uuid, read_text,
};

/// What `gpu-health import dcgm` was asked to do.
#[derive(Debug, Clone)]
pub struct DcgmOptions {
    pub files: Vec<PathBuf>,
    /// Time of samples without a timestamp; None: each file's modification time.
    pub at: Option<DateTime<Utc>>,
    /// Host name when the samples carry no `Hostname` label (default: the file name).
    pub hostname: Option<String>,
    pub partitions: i32,
    pub out: PathBuf,
}

const MALFORMED: &str = "malformed sample line";
const UNKNOWN_METRIC: &str = "samples of metrics not mapped (e.g. DCGM_FI_DEV_ENC_UTIL)";
const NO_GPU: &str = "samples without a GPU label (UUID or gpu)";
const BLANK: &str = "samples holding a DCGM blank value (not supported / not found)";
const REPEATED: &str =
    "samples repeating a metric for the same GPU and time (MIG instances; first kept)";

/// How a DCGM value becomes a column value.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Same,
    /// MiB -> bytes (DCGM_FI_DEV_FB_*: "in MB", dcgm_fields.h).
    MiB,
    /// 0/1 -> boolean.
    Flag,
}

/// DCGM metric name -> (column, unit). Units from NVIDIA/DCGM `dcgm_fields.h` and
/// dcgm-exporter `etc/default-counters.csv`: temperatures C, power W, clocks MHz,
/// utilisations %, PROF_* activities ratios 0..1, PCIE_TX/RX_BYTES bytes per second,
/// POWER/THERMAL_VIOLATION ns ("Power Violation time in ns", field 240/241), so no
/// scaling for those.
fn metric(name: &str) -> Option<(&'static str, Unit)> {
    use Unit::*;
    Some(match name {
        "DCGM_FI_DEV_GPU_TEMP" => ("gpu_temp", Same),
        "DCGM_FI_DEV_MEMORY_TEMP" => ("memory_temp", Same),
        "DCGM_FI_DEV_POWER_USAGE" => ("power_usage", Same),
        "DCGM_FI_DEV_SM_CLOCK" => ("sm_clock_mhz", Same),
        "DCGM_FI_DEV_MEM_CLOCK" => ("mem_clock_mhz", Same),
        "DCGM_FI_DEV_GPU_UTIL" => ("gpu_utilization", Same),
        "DCGM_FI_DEV_MEM_COPY_UTIL" => ("mem_copy_utilization", Same),
        "DCGM_FI_DEV_FB_USED" => ("fb_used_bytes", MiB),
        "DCGM_FI_DEV_FB_FREE" => ("fb_free_bytes", MiB),
        "DCGM_FI_DEV_FB_TOTAL" => ("fb_total_bytes", MiB),
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" => ("ecc_sbe_volatile", Same),
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" => ("ecc_dbe_volatile", Same),
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL" => ("ecc_sbe_aggregate", Same),
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL" => ("ecc_dbe_aggregate", Same),
        "DCGM_FI_DEV_RETIRED_DBE" => ("retired_pages_dbe", Same),
        "DCGM_FI_DEV_XID_ERRORS" => ("xid", Same),
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER" => ("pcie_replay_counter", Same),
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS" => ("remapped_rows_correctable", Same),
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS" => ("remapped_rows_uncorrectable", Same),
        "DCGM_FI_DEV_ROW_REMAP_PENDING" => ("row_remap_pending", Flag),
        "DCGM_FI_DEV_ROW_REMAP_FAILURE" => ("row_remap_failure", Flag),
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS" | "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" => {
            ("throttle_reasons", Same)
        }
        "DCGM_FI_PROF_SM_ACTIVE" => ("sm_active", Same),
        "DCGM_FI_PROF_SM_OCCUPANCY" => ("sm_occupancy", Same),
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE" => ("tensor_active", Same),
        "DCGM_FI_PROF_DRAM_ACTIVE" => ("dram_active", Same),
        "DCGM_FI_PROF_PCIE_TX_BYTES" => ("pcie_tx_bytes_per_sec", Same),
        "DCGM_FI_PROF_PCIE_RX_BYTES" => ("pcie_rx_bytes_per_sec", Same),
        "DCGM_FI_DEV_POWER_MGMT_LIMIT" => ("power_limit", Same),
        "DCGM_FI_DEV_SLOWDOWN_TEMP" => ("slowdown_temp", Same),
        "DCGM_FI_DEV_SHUTDOWN_TEMP" => ("shutdown_temp", Same),
        // Thermal margin to the T.Limit (field 153, tag `gpu_temp_tlimit`).
        "DCGM_FI_DEV_GPU_TEMP_LIMIT" => ("gpu_temp_tlimit", Same),
        "DCGM_FI_DEV_MEM_MAX_OP_TEMP" => ("memory_max_op_temp", Same),
        "DCGM_FI_DEV_MAX_SM_CLOCK" => ("max_sm_clock_mhz", Same),
        "DCGM_FI_DEV_THERMAL_VIOLATION" => ("thermal_violation_ns", Same),
        "DCGM_FI_DEV_POWER_VIOLATION" => ("power_violation_ns", Same),
        _ => return None,
    })
}

/// DCGM's "no value" sentinels (NVIDIA/DCGM `dcgm_structs.h`, DCGM_BLANK_VALUES): a
/// double at or above DCGM_FP64_BLANK (2^47), an int32 in DCGM_INT32_BLANK
/// (0x7ffffff0) .. +3, an int64 at or above DCGM_INT64_BLANK (0x7ffffffffffffff0).
/// The violation counters are int64 nanoseconds, which may pass 2^47 (39 hours of
/// throttling), so for them only the int64 sentinel counts.
fn is_blank(column: &str, v: f64) -> bool {
    const FP64_BLANK: f64 = 140_737_488_355_328.0;
    const INT32_BLANK: f64 = 2_147_483_632.0;
    const INT64_BLANK: f64 = 9_223_372_036_854_775_792.0;
    if (INT32_BLANK..=INT32_BLANK + 3.0).contains(&v) || v >= INT64_BLANK {
        return true;
    }
    !column.ends_with("_violation_ns") && v >= FP64_BLANK
}

/// One sample line.
#[derive(Debug, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses `name{label="value",...} value [timestamp]`; None when malformed.
pub(crate) fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // Skip separators; a closing brace ends the set.
            while chars
                .next_if(|(_, c)| *c == ',' || c.is_whitespace())
                .is_some()
            {}
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &after[start + 1..];
                break;
            }
            let mut end = start + c.len_utf8();
            while let Some((i, c)) = chars.next_if(|(_, c)| is_name_char(*c)) {
                end = i + c.len_utf8();
            }
            let key = after[start..end].to_owned();
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            chars.next_if(|(_, c)| *c == '=')?;
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            chars.next_if(|(_, c)| *c == '"')?;
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '"') => break,
                    (_, '\\') => match chars.next()? {
                        (_, 'n') => value.push('\n'),
                        (_, c) => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            }
            if !key.chars().all(is_name_char) {
                return None;
            }
            labels.push((key, value));
        }
    }
    let mut tokens = rest.split_whitespace();
    let value: f64 = match tokens.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t.parse().ok()?,
    };
    let timestamp_ms = match tokens.next() {
        Some(t) => Some(t.parse::<i64>().ok()?),
        None => None,
    };
    if tokens.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Reads one file's samples into rows, one per (GPU, time), in order of time.
pub(crate) fn read_rows(
    text: &str,
    default_time: DateTime<Utc>,
    default_host: &str,
    summary: &mut ImportSummary,
) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut index: HashMap<(String, i64), usize> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(sample) = parse_sample(line) else {
            summary.skip(MALFORMED);
            continue;
        };
        let Some((column, unit)) = metric(&sample.name) else {
            summary.skip(UNKNOWN_METRIC);
            continue;
        };
        let time = match sample.timestamp_ms {
            Some(ms) => match DateTime::from_timestamp_millis(ms) {
                Some(t) => t,
                None => {
                    summary.skip(MALFORMED);
                    continue;
                }
            },
            None => default_time,
        };
        let hostname = sample
            .label("Hostname")
            .or_else(|| sample.label("hostname"))
            .unwrap_or(default_host)
            .to_owned();
        let device_index = sample.label("gpu").and_then(|g| g.parse::<i64>().ok());
        let pci = sample.label("pci_bus_id").map(str::to_owned);
        let uuid = match sample.label("UUID").filter(|u| !is_masked_uuid(u)) {
            Some(u) => u.to_owned(),
            None => {
                let Some(locator) = pci
                    .clone()
                    .or_else(|| device_index.map(|i| format!("index {i}")))
                else {
                    summary.skip(NO_GPU);
                    continue;
                };
                let u = derive_uuid(&hostname, &locator);
                summary.uuids_derived.insert(u.clone());
                u
            }
        };
        if !sample.value.is_finite() || is_blank(column, sample.value) {
            summary.skip(BLANK);
            continue;
        }
        let key = (uuid, time.timestamp_millis());
        let at = *index.entry(key.clone()).or_insert_with(|| {
            let mut row = Row::new(time);
            row.gpu_uuid = key.0.clone();
            row.hostname = hostname.clone();
            rows.push(row);
            rows.len() - 1
        });
        let row = &mut rows[at];
        row.device_index = row.device_index.or(device_index);
        if row.pci_bus_id.is_none() {
            row.pci_bus_id = pci;
        }
        if row.gpu_model.is_none() {
            row.gpu_model = sample.label("modelName").map(str::to_owned);
        }
        if row.get(column).is_some() {
            summary.skip(REPEATED);
            continue;
        }
        let v = match unit {
            Unit::Same => Val::Num(sample.value),
            Unit::MiB => Val::Num(sample.value * MIB),
            Unit::Flag => Val::Bool(sample.value != 0.0),
        };
        row.set(column, v);
    }
    rows.sort_by_key(|r| r.time);
    rows
}

fn modification_time(path: &Path) -> Result<DateTime<Utc>> {
    let m = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading the modification time of {}", path.display()))?;
    Ok(DateTime::<Utc>::from(m))
}

/// `gpu-health import dcgm`: every file's samples into one dump.
pub fn import_dcgm(opts: &DcgmOptions) -> Result<ImportSummary> {
    let mut out = Output::create(&opts.out, opts.partitions)?;
    for path in &opts.files {
        let text = read_text(path)?;
        let default_time = match opts.at {
            Some(t) => t,
            None => modification_time(path)?,
        };
        let host = match &opts.hostname {
            Some(h) => h.clone(),
            None => hostname_from_path(path),
        };
        let rows = read_rows(&text, default_time, &host, &mut out.summary);
        if rows.iter().any(|r| r.time == default_time) {
            out.summary.note(match opts.at {
                Some(_) => format!(
                    "{}: samples without a timestamp take --at {}",
                    path.display(),
                    format_time(&default_time)
                ),
                None => format!(
                    "{}: samples without a timestamp take the file's modification time {} \
                     (pass --at to set it)",
                    path.display(),
                    format_time(&default_time)
                ),
            });
        }
        if rows.iter().any(|r| r.hostname == host) && opts.hostname.is_none() {
            out.summary.note(format!(
                "{}: no Hostname label; host name {host} from the file name (pass --hostname)",
                path.display()
            ));
        }
        out.add_file(rows);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::format_time;

    fn fixture(name: &str) -> String {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        std::fs::read_to_string(&p).unwrap()
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-02-11T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn sample_lines_parse_with_escapes_and_timestamps() {
        let s = parse_sample(
            r#"DCGM_FI_DEV_GPU_TEMP{gpu="0", UUID="GPU-1",modelName="A \"B\" \\ C\nD",x="}"} 41 1770805800000"#,
        )
        .unwrap();
        assert_eq!(s.name, "DCGM_FI_DEV_GPU_TEMP");
        assert_eq!(s.label("modelName"), Some("A \"B\" \\ C\nD"));
        assert_eq!(s.label("x"), Some("}"));
        assert_eq!(s.value, 41.0);
        assert_eq!(s.timestamp_ms, Some(1_770_805_800_000));
        let s = parse_sample("up 1").unwrap();
        assert!(s.labels.is_empty());
        assert_eq!(s.timestamp_ms, None);
        for bad in [
            "...",
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x 1 2 3",
            "x{a=\"1\"} hot",
            "x{a=\"1\"}",
        ] {
            assert_eq!(parse_sample(bad), None, "{bad}");
        }
    }

    #[test]
    fn real_exporter_sample_with_mig_instances() {
        let mut s = ImportSummary::default();
        let rows = read_rows(
            &fixture("dcgm-exporter-pr736.prom"),
            at(),
            "file-host",
            &mut s,
        );
        // Three GPUs (0, 1, 2), one scrape.
        assert_eq!(rows.len(), 3, "{s}");
        let gpu0 = rows
            .iter()
            .find(|r| r.gpu_uuid == "GPU-9a63752e-af8d-fe52-7f0d-968bca6d52e3")
            .unwrap();
        assert_eq!(gpu0.device_index, Some(0));
        assert_eq!(gpu0.gpu_model.as_deref(), Some("NVIDIA A30"));
        assert_eq!(gpu0.hostname, "dcgm-exporter-wwwjh");
        assert_eq!(gpu0.pci_bus_id.as_deref(), Some("00000000:65:00.0"));
        assert_eq!(gpu0.num("gpu_temp"), Some(50.0));
        assert_eq!(gpu0.num("fb_used_bytes"), Some(3744.0 * 1048576.0));
        assert_eq!(format_time(&gpu0.time), "2026-02-11T10:30:00.000Z");
        let ada = rows.iter().find(|r| r.device_index == Some(1)).unwrap();
        assert_eq!(
            ada.gpu_model.as_deref(),
            Some("NVIDIA RTX 2000 Ada Generation")
        );
        assert_eq!(ada.num("gpu_temp"), Some(44.0));
        assert!(s.skipped.is_empty(), "{s}");
    }

    #[test]
    fn readme_sample_blank_sentinel_and_elisions() {
        let mut s = ImportSummary::default();
        let rows = read_rows(
            &fixture("dcgm-exporter-readme.prom"),
            at(),
            "file-host",
            &mut s,
        );
        assert_eq!(rows.len(), 1, "{s}");
        let r = &rows[0];
        assert_eq!(r.gpu_uuid, "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52");
        assert_eq!(r.hostname, "file-host");
        assert_eq!(r.num("sm_clock_mhz"), Some(139.0));
        assert_eq!(r.num("mem_clock_mhz"), Some(405.0));
        assert_eq!(r.num("memory_temp"), None);
        assert_eq!(s.skipped.get(BLANK), Some(&1));
        assert_eq!(s.skipped.get(MALFORMED), Some(&2));
    }

    #[test]
    fn concatenated_scrapes_with_timestamps_give_a_row_per_gpu_and_time() {
        let text = "\
# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",UUID=\"GPU-a\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 41 1770805800000
DCGM_FI_DEV_GPU_TEMP{gpu=\"1\",UUID=\"GPU-b\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 43 1770805800000
DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-a\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 412.5 1770805800000
DCGM_FI_DEV_ROW_REMAP_PENDING{gpu=\"0\",UUID=\"GPU-a\",Hostname=\"n1\"} 1 1770805800000
DCGM_FI_DEV_THERMAL_VIOLATION{gpu=\"0\",UUID=\"GPU-a\",Hostname=\"n1\"} 150000000000000 1770805800000
DCGM_FI_DEV_ENC_UTIL{gpu=\"0\",UUID=\"GPU-a\",Hostname=\"n1\"} 0 1770805800000
DCGM_FI_DEV_CPU_TEMP_CURRENT{cpu=\"0\"} 39.5 1770805800000

# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",UUID=\"GPU-a\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 42 1770805810000
DCGM_FI_DEV_GPU_TEMP{gpu=\"1\",UUID=\"GPU-b\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"n1\"} 44 1770805810000
DCGM_FI_DEV_PCIE_REPLAY_COUNTER{gpu=\"1\",UUID=\"GPU-b\",Hostname=\"n1\"} 2147483634 1770805810000
";
        let mut s = ImportSummary::default();
        let rows = read_rows(text, at(), "file-host", &mut s);
        assert_eq!(rows.len(), 4, "{s}");
        let a: Vec<&Row> = rows.iter().filter(|r| r.gpu_uuid == "GPU-a").collect();
        assert_eq!(a.len(), 2);
        assert_eq!(format_time(&a[0].time), "2026-02-11T10:30:00.000Z");
        assert_eq!(format_time(&a[1].time), "2026-02-11T10:30:10.000Z");
        assert_eq!(a[0].num("power_usage"), Some(412.5));
        assert_eq!(a[0].get("row_remap_pending"), Some(Val::Bool(true)));
        // Above DCGM_FP64_BLANK but a real int64 nanosecond count.
        assert_eq!(a[0].num("thermal_violation_ns"), Some(1.5e14));
        assert_eq!(a[1].num("gpu_temp"), Some(42.0));
        assert_eq!(a[0].hostname, "n1");
        assert_eq!(s.skipped.get(UNKNOWN_METRIC), Some(&2));
        assert_eq!(s.skipped.get(BLANK), Some(&1));
    }
}
