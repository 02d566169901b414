//! Any CSV with a header -> flat rows, by a user's column map (`--map src=dst,...`).
//!
//! Owns the map's validation (every destination is a contract column, every source a
//! header of the file) and the per-row identity: the mapped `gpu_uuid`, else one derived
//! from (hostname, device_index). Values are taken in the destination column's unit
//! (frame-buffer columns in bytes); a unit after a space (`48 C`) is dropped.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::{
    ImportSummary, Output, Row, Val, Zone, derive_uuid, is_flat_column, is_masked_uuid, parse_bool,
    parse_number, parse_time,
};
use crate::event::schema::{Kind, METRICS};

/// What `gpu-health import csv` was asked to do.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub files: Vec<PathBuf>,
    /// (source header, destination column) pairs.
    pub map: Vec<(String, String)>,
    pub hostname: Option<String>,
    pub model: Option<String>,
    pub tz: Option<Zone>,
    pub partitions: i32,
    pub out: PathBuf,
}

const FIELD_COUNT: &str = "line with a field count unlike the header";
const BAD_TIME: &str = "line with an unreadable time";
const NO_GPU: &str = "line with neither gpu_uuid nor device_index";
const NO_HOST: &str = "line with an empty hostname";
const BAD_VALUE: &str = "value not a number (field left out, row kept)";
const UNREADABLE: &str = "line the CSV reader refused";

/// Parses `src=dst,src=dst`; an unknown destination is an error naming it.
pub fn parse_map(text: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((src, dst)) = part.split_once('=') else {
            bail!("--map {part:?}: expected src=dst");
        };
        let (src, dst) = (src.trim(), dst.trim());
        if !is_flat_column(dst) {
            bail!(
                "--map {src}={dst}: {dst:?} is not a gpu_metrics column; expected time, \
                 gpu_uuid, hostname, pci_bus_id, device_index, gpu_model or a metric \
                 column ({}, ...)",
                METRICS
                    .iter()
                    .take(6)
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        pairs.push((src.to_owned(), dst.to_owned()));
    }
    if !pairs.iter().any(|(_, d)| d == "time") {
        bail!("--map: no column is mapped to time (e.g. --map timestamp=time,...)");
    }
    Ok(pairs)
}

/// Reads one CSV text by the map.
pub(crate) fn read_rows(
    text: &str,
    opts: &CsvOptions,
    zone: &Zone,
    summary: &mut ImportSummary,
) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader.headers().context("reading the CSV header")?.clone();
    let mut columns = Vec::new();
    for (src, dst) in &opts.map {
        let Some(at) = headers.iter().position(|h| h == src) else {
            bail!(
                "--map {src}={dst}: no column {src:?} in the header ({})",
                headers.iter().collect::<Vec<_>>().join(", ")
            );
        };
        columns.push((at, dst.as_str()));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let Ok(record) = record else {
            summary.skip(UNREADABLE);
            continue;
        };
        if record.len() != headers.len() {
            summary.skip(FIELD_COUNT);
            continue;
        }
        let mut time = None;
        let mut bad_time = false;
        let mut row = Row::new(chrono::DateTime::UNIX_EPOCH);
        let mut uuid = None;
        let mut hostname = opts.hostname.clone();
        row.gpu_model.clone_from(&opts.model);
        for &(at, dst) in &columns {
            let v = record.get(at).unwrap_or("").trim();
            if v.is_empty() || v == "N/A" || v.starts_with('[') {
                continue;
            }
            match dst {
                "time" => match parse_time(v, zone) {
                    Ok(t) => time = Some(t),
                    Err(_) => bad_time = true,
                },
                "gpu_uuid" => uuid = Some(v.to_owned()),
                "hostname" => hostname = Some(v.to_owned()),
                "pci_bus_id" => row.pci_bus_id = Some(v.to_owned()),
                "gpu_model" => row.gpu_model = Some(v.to_owned()),
                "device_index" => match parse_number(v) {
                    Some(n) => row.device_index = Some(n as i64),
                    None => summary.skip(BAD_VALUE),
                },
                column => {
                    let kind = METRICS.iter().find(|m| m.name == column).map(|m| m.kind);
                    let parsed = match kind {
                        Some(Kind::Bool) => parse_bool(v).map(Val::Bool),
                        _ => parse_number(v).map(Val::Num),
                    };
                    match parsed {
                        Some(val) => row.set(column, val),
                        None => summary.skip(BAD_VALUE),
                    }
                }
            }
        }
        let Some(time) = time.filter(|_| !bad_time) else {
            summary.skip(BAD_TIME);
            continue;
        };
        row.time = time;
        let Some(hostname) = hostname.filter(|h| !h.is_empty()) else {
            summary.skip(NO_HOST);
            continue;
        };
        row.hostname = hostname;
        row.gpu_uuid = match uuid.filter(|u| !is_masked_uuid(u)) {
            Some(u) => u,
            None => {
                let Some(i) = row.device_index else {
                    summary.skip(NO_GPU);
                    continue;
                };
                let u = derive_uuid(&row.hostname, &format!("index {i}"));
                summary.uuids_derived.insert(u.clone());
                u
            }
        };
        rows.push(row);
    }
    Ok(rows)
}

/// `gpu-health import csv`: every file by the same map into one dump.
pub fn import_csv(opts: &CsvOptions) -> Result<ImportSummary> {
    if opts.hostname.is_none() && !opts.map.iter().any(|(_, d)| d == "hostname") {
        bail!("no host name: pass --hostname H or map a column to hostname (--map host=hostname)");
    }
    if !opts
        .map
        .iter()
        .any(|(_, d)| d == "gpu_uuid" || d == "device_index")
    {
        bail!("no GPU identity: map a column to gpu_uuid or device_index");
    }
    let zone = opts.tz.unwrap_or(Zone::Utc);
    let mut out = Output::create(&opts.out, opts.partitions)?;
    out.summary.note(match opts.tz {
        Some(z) => format!("times without an offset read in {z} (--tz)"),
        None => "times without an offset read as UTC (no --tz given)".into(),
    });
    for path in &opts.files {
        let text = super::read_text(path)?;
        let rows = read_rows(&text, opts, &zone, &mut out.summary)
            .with_context(|| format!("importing {}", path.display()))?;
        out.add_file(rows);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::format_time;
    use crate::import::test_support::real;

    fn opts(map: &str, hostname: Option<&str>) -> CsvOptions {
        CsvOptions {
            files: vec![],
            map: parse_map(map).unwrap(),
            hostname: hostname.map(str::to_owned),
            model: None,
            tz: None,
            partitions: 4,
            out: PathBuf::new(),
        }
    }

    #[test]
    fn unknown_destinations_are_errors_naming_the_key() {
        let err = parse_map("timestamp=time,temp=gpu_temperature").unwrap_err();
        assert!(err.to_string().contains("gpu_temperature"), "{err}");
        assert!(
            parse_map("gpu_index=device_index").is_err(),
            "time is required"
        );
        assert!(parse_map("timestamp").is_err());
    }

    #[test]
    fn missing_source_columns_are_errors_naming_them() {
        let o = opts("timestamp=time,idx=device_index", Some("h"));
        let mut s = ImportSummary::default();
        let err = read_rows("timestamp,gpu\n1,2\n", &o, &Zone::Utc, &mut s).unwrap_err();
        assert!(err.to_string().contains("\"idx\""), "{err}");
    }

    #[test]
    fn rows_by_the_map_with_derived_uuids_and_counted_bad_lines() {
        let o = opts(
            "ts=time,i=device_index,t=gpu_temp,pending=row_remap_pending",
            Some("node-1"),
        );
        let text = "ts,i,t,pending,ignored\n\
                    2026/07/03 22:10:46.109,0, 48 C,no,x\n\
                    2026/07/03 22:10:46.109,1,hot,yes,x\n\
                    2026/07/03 22:10:47.109,1,50\n\
                    never,1,50,no,x\n";
        let mut s = ImportSummary::default();
        let rows = read_rows(text, &o, &Zone::parse("+02:00").unwrap(), &mut s).unwrap();
        assert_eq!(rows.len(), 2, "{s}");
        assert_eq!(format_time(&rows[0].time), "2026-07-03T20:10:46.109Z");
        assert_eq!(rows[0].num("gpu_temp"), Some(48.0));
        assert_eq!(rows[0].get("row_remap_pending"), Some(Val::Bool(false)));
        assert_eq!(rows[1].num("gpu_temp"), None);
        assert_eq!(rows[0].gpu_uuid, derive_uuid("node-1", "index 0"));
        assert_ne!(rows[0].gpu_uuid, rows[1].gpu_uuid);
        assert_eq!(s.skipped.get(BAD_VALUE), Some(&1));
        assert_eq!(s.skipped.get(FIELD_COUNT), Some(&1));
        assert_eq!(s.skipped.get(BAD_TIME), Some(&1));
    }

    /// The nanoGPT logger's CSV against the independently converted dump: the same
    /// multiset of (time, device_index, gpu_temp, power_usage, gpu_utilization).
    #[test]
    fn nanogpt_matches_the_reference_dump() {
        let (Some(csv), Some(dump)) = (
            real("nanogpt-8gpu/gpu_metrics.csv"),
            real("nanogpt-8gpu.dump.jsonl.gz"),
        ) else {
            return;
        };
        let o = opts(
            "timestamp=time,gpu_index=device_index,temperature_C=gpu_temp,\
             utilization_gpu_percent=gpu_utilization,power_W=power_usage",
            Some("g150.voltagepark.net"),
        );
        let mut s = ImportSummary::default();
        let text = std::fs::read_to_string(&csv).unwrap();
        let rows = read_rows(&text, &o, &Zone::Utc, &mut s).unwrap();
        assert_eq!(rows.len(), 36_112, "{s}");
        assert!(s.skipped.is_empty(), "{s}");
        let gpus: std::collections::BTreeSet<&str> =
            rows.iter().map(|r| r.gpu_uuid.as_str()).collect();
        assert_eq!(gpus.len(), 8);

        type Key = (String, i64, String, String, String);
        let key = |t: String, i: i64, a: Option<f64>, b: Option<f64>, c: Option<f64>| -> Key {
            (t, i, format!("{a:?}"), format!("{b:?}"), format!("{c:?}"))
        };
        let mut ours: Vec<Key> = rows
            .iter()
            .map(|r| {
                key(
                    format_time(&r.time),
                    r.device_index.unwrap(),
                    r.num("gpu_temp"),
                    r.num("power_usage"),
                    r.num("gpu_utilization"),
                )
            })
            .collect();
        let reader = crate::dump::open_dump(&dump).unwrap();
        let mut theirs: Vec<Key> = std::io::BufRead::lines(reader)
            .map(|line| {
                let rec: crate::dump::DumpRecord = serde_json::from_str(&line.unwrap()).unwrap();
                let v: serde_json::Value =
                    serde_json::from_str(rec.value.as_deref().unwrap()).unwrap();
                key(
                    v["time"].as_str().unwrap().to_owned(),
                    v["device_index"].as_i64().unwrap(),
                    v["gpu_temp"].as_f64(),
                    v["power_usage"].as_f64(),
                    v["gpu_utilization"].as_f64(),
                )
            })
            .collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours.len(), theirs.len());
        assert!(ours == theirs, "the multisets differ");
    }
}
