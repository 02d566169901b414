//! nvidia-smi `--query-gpu=... --format=csv[,nounits][,noheader]` output -> flat rows.
//!
//! Owns the field map (nvidia-smi query names and their aliases -> contract columns),
//! header recognition inside mixed text (a capture file holds `-q`, help, dmon and other
//! CSV sections: only `--query-gpu` blocks are read), units in headers and values, the
//! "no value" markers (`[N/A]`, `[Not Supported]`, ...), and identity: masked UUIDs are
//! replaced by stable derived ones.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{
    MIB, Output, Row, Val, Zone, derive_uuid, hostname_from_path, is_masked_uuid, parse_bool,
    parse_number, parse_time, read_text,
};
use crate::import::ImportSummary;

/// What `gpu-health import nvidia-smi` was asked to do.
#[derive(Debug, Clone)]
pub struct NvidiaSmiOptions {
    pub files: Vec<PathBuf>,
    /// Zone of nvidia-smi's local timestamps; None reads them as UTC (and says so).
    pub tz: Option<Zone>,
    /// Host name when the files have no `hostname` column.
    pub hostname: Option<String>,
    /// The `--query-gpu` list the files were written with, for `noheader` output.
    pub query_gpu: Option<String>,
    pub partitions: i32,
    pub out: PathBuf,
}

/// Skip reasons (the summary's words).
const NOT_QUERY_GPU: &str = "not query-gpu output";
const FIELD_COUNT: &str = "query-gpu line with a field count unlike its header";
const BAD_TIME: &str = "query-gpu line with an unreadable timestamp";
const DATA_BEFORE_HEADER: &str = "query-gpu line before any header (pass --query-gpu)";
const BAD_VALUE: &str = "value not a number (field left out, row kept)";

/// Where an nvidia-smi field goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Time,
    Uuid,
    Model,
    BusId,
    Index,
    Hostname,
    /// A number copied to the column as is.
    Number(&'static str),
    /// MiB -> bytes.
    MiB(&'static str),
    /// `Yes`/`No` -> boolean.
    YesNo(&'static str),
    /// Power draw candidates, lower is preferred: power.draw, .average, .instant.
    PowerDraw(u8),
    /// Power limit candidates: enforced.power.limit, then power.limit.
    PowerLimit(u8),
    /// Clock-event counters in microseconds, summed into thermal_violation_ns.
    ThermalUs,
    /// sw_power_cap counter in microseconds -> power_violation_ns.
    PowerUs,
}

/// The field map. Names and aliases: `nvidia-smi --help-query-gpu` (drivers 590-610,
/// in the shared captures).
fn field(name: &str) -> Option<Field> {
    use Field::*;
    Some(match name {
        "timestamp" => Time,
        "uuid" | "gpu_uuid" => Uuid,
        "name" | "gpu_name" => Model,
        "pci.bus_id" | "gpu_bus_id" => BusId,
        "index" => Index,
        "hostname" => Hostname,
        "temperature.gpu" => Number("gpu_temp"),
        "temperature.memory" => Number("memory_temp"),
        // Headroom in C to the T.Limit (DCGM 153 `gpu_temp_tlimit`), kept as it is.
        "temperature.gpu.tlimit" => Number("gpu_temp_tlimit"),
        "power.draw" => PowerDraw(0),
        "power.draw.average" | "gpu.power.draw.average" => PowerDraw(1),
        "power.draw.instant" | "gpu.power.draw.instant" => PowerDraw(2),
        "enforced.power.limit" | "gpu.power.current_limit" => PowerLimit(0),
        "power.limit" | "gpu.power.requested_limit" => PowerLimit(1),
        "clocks_event_reasons.active" | "clocks_throttle_reasons.active" => {
            Number("throttle_reasons")
        }
        "memory.used" => MiB("fb_used_bytes"),
        "memory.free" => MiB("fb_free_bytes"),
        "memory.total" => MiB("fb_total_bytes"),
        "utilization.memory" => Number("memory_utilization"),
        "utilization.gpu" => Number("gpu_utilization"),
        "ecc.errors.corrected.volatile.total" => Number("ecc_sbe_volatile"),
        "ecc.errors.uncorrected.volatile.total" => Number("ecc_dbe_volatile"),
        "ecc.errors.corrected.aggregate.total" => Number("ecc_sbe_aggregate"),
        "ecc.errors.uncorrected.aggregate.total" => Number("ecc_dbe_aggregate"),
        "retired_pages.double_bit.count" | "retired_pages.dbe" => Number("retired_pages_dbe"),
        "remapped_rows.correctable" | "remapped_rows.sbe" => Number("remapped_rows_correctable"),
        "remapped_rows.uncorrectable" | "remapped_rows.dbe" => {
            Number("remapped_rows_uncorrectable")
        }
        "remapped_rows.pending" => YesNo("row_remap_pending"),
        "remapped_rows.failure" => YesNo("row_remap_failure"),
        "remapped_rows.histogram.none" => Number("remap_banks_exhausted"),
        "clocks.current.sm" | "clocks.sm" => Number("sm_clock_mhz"),
        "clocks.current.memory" | "clocks.mem" => Number("mem_clock_mhz"),
        "clocks.max.sm" => Number("max_sm_clock_mhz"),
        "clocks_event_reasons_counters.sw_thermal_slowdown"
        | "clocks_event_reasons_counters.hw_thermal_slowdown" => ThermalUs,
        "clocks_event_reasons_counters.sw_power_cap" => PowerUs,
        _ => return None,
    })
}

/// A header name without its unit: `power.draw [W]` -> `power.draw`.
fn header_name(raw: &str) -> &str {
    raw.split(" [").next().unwrap_or(raw).trim()
}

/// nvidia-smi's markers for "no value"; any bracketed text is one (`[N/A]`,
/// `[Not Supported]`, `[Unknown Error]`, `[Requested functionality has been
/// deprecated]`, `[Insufficient Permissions]`, `[GPU is lost]`).
fn present(value: &str) -> Option<&str> {
    let v = value.trim();
    if v.is_empty() || v == "N/A" || v.starts_with('[') {
        None
    } else {
        Some(v)
    }
}

/// Splits one line as CSV with trimming (one reader per line: a stray quote in the
/// text around the CSV blocks must not swallow the lines after it).
fn split_csv(line: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(line.as_bytes());
    match reader.records().next() {
        Some(Ok(rec)) => rec.iter().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The column map of a header line, when the line is a `--query-gpu` header: it names
/// `timestamp`, the GPU (`uuid` or `index`) and at least one metric we map.
fn header_map(fields: &[String]) -> Option<Vec<Option<Field>>> {
    let map: Vec<Option<Field>> = fields.iter().map(|f| field(header_name(f))).collect();
    let has = |want: Field| map.contains(&Some(want));
    let metric = map.iter().flatten().any(|f| {
        !matches!(
            f,
            Field::Time
                | Field::Uuid
                | Field::Model
                | Field::BusId
                | Field::Index
                | Field::Hostname
        )
    });
    (has(Field::Time) && (has(Field::Uuid) || has(Field::Index)) && metric).then_some(map)
}

/// Per-file context: the host name when the row has none, the zone of local times.
pub(crate) struct FileContext<'a> {
    pub hostname: &'a str,
    pub zone: &'a Zone,
    pub query_gpu: Option<&'a str>,
}

/// Reads the `--query-gpu` rows of one file's text; everything else is counted.
pub(crate) fn read_rows(text: &str, ctx: &FileContext, summary: &mut ImportSummary) -> Vec<Row> {
    let mut rows = Vec::new();
    // The --query-gpu list holds for the whole file; a header holds for its block, which
    // ends at a blank line or a `#` line (captures put the command line, with the same
    // commas as the header, in a `# $ nvidia-smi --query-gpu=...` comment).
    let given: Option<Vec<Option<Field>>> = ctx.query_gpu.and_then(|q| {
        let fields: Vec<String> = q.split(',').map(|s| s.trim().to_owned()).collect();
        header_map(&fields)
    });
    let mut block: Option<Vec<Option<Field>>> = None;
    let mut header_seen = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            block = None;
            continue;
        }
        if line.trim_start().starts_with('#') {
            block = None;
            summary.skip(NOT_QUERY_GPU);
            continue;
        }
        let fields = if line.contains(',') {
            split_csv(line)
        } else {
            Vec::new()
        };
        if fields.len() < 2 {
            summary.skip(NOT_QUERY_GPU);
            continue;
        }
        if let Some(m) = header_map(&fields) {
            block = Some(m);
            header_seen = true;
            continue;
        }
        let looks_like_data = fields
            .iter()
            .any(|f| f.contains(':') && parse_time(f, ctx.zone).is_ok());
        match block.as_ref().or(given.as_ref()) {
            Some(m) if m.len() == fields.len() => {
                if let Some(row) = build_row(m, &fields, ctx, summary) {
                    rows.push(row);
                }
            }
            Some(_) if looks_like_data => summary.skip(FIELD_COUNT),
            None if looks_like_data && !header_seen => summary.skip(DATA_BEFORE_HEADER),
            _ => summary.skip(NOT_QUERY_GPU),
        }
    }
    rows
}

fn build_row(
    map: &[Option<Field>],
    fields: &[String],
    ctx: &FileContext,
    summary: &mut ImportSummary,
) -> Option<Row> {
    let time_at = map.iter().position(|f| *f == Some(Field::Time))?;
    let time = match parse_time(&fields[time_at], ctx.zone) {
        Ok(t) => t,
        Err(_) => {
            summary.skip(BAD_TIME);
            return None;
        }
    };
    let mut row = Row::new(time);
    let mut uuid = None;
    let mut hostname = None;
    let mut power: Option<(u8, f64)> = None;
    let mut limit: Option<(u8, f64)> = None;
    let mut thermal_us: Option<f64> = None;
    for (f, raw) in map.iter().zip(fields) {
        let (Some(f), Some(v)) = (f, present(raw)) else {
            continue;
        };
        let number = || parse_number(v);
        let numeric = |summary: &mut ImportSummary| {
            let n = number();
            if n.is_none() {
                summary.skip(BAD_VALUE);
            }
            n
        };
        match *f {
            Field::Time => {}
            Field::Uuid => uuid = Some(v.to_owned()),
            Field::Model => row.gpu_model = Some(v.to_owned()),
            Field::BusId => row.pci_bus_id = Some(v.to_owned()),
            Field::Hostname => hostname = Some(v.to_owned()),
            Field::Index => row.device_index = numeric(summary).map(|n| n as i64),
            Field::Number(col) => {
                if let Some(n) = numeric(summary) {
                    row.set(col, Val::Num(n));
                }
            }
            Field::MiB(col) => {
                if let Some(n) = numeric(summary) {
                    row.set(col, Val::Num(n * MIB));
                }
            }
            Field::YesNo(col) => match parse_bool(v) {
                Some(b) => row.set(col, Val::Bool(b)),
                None => summary.skip(BAD_VALUE),
            },
            Field::PowerDraw(rank) => match numeric(summary) {
                Some(n) if power.is_none_or(|(r, _)| rank < r) => power = Some((rank, n)),
                _ => {}
            },
            Field::PowerLimit(rank) => match numeric(summary) {
                Some(n) if limit.is_none_or(|(r, _)| rank < r) => limit = Some((rank, n)),
                _ => {}
            },
            Field::ThermalUs => {
                if let Some(n) = numeric(summary) {
                    thermal_us = Some(thermal_us.unwrap_or(0.0) + n);
                }
            }
            Field::PowerUs => {
                if let Some(n) = numeric(summary) {
                    // Microseconds -> nanoseconds.
                    row.set("power_violation_ns", Val::Num(n * 1000.0));
                }
            }
        }
    }
    if let Some((_, w)) = power {
        row.set("power_usage", Val::Num(w));
    }
    if let Some((_, w)) = limit {
        row.set("power_limit", Val::Num(w));
    }
    if let Some(us) = thermal_us {
        row.set("thermal_violation_ns", Val::Num(us * 1000.0));
    }
    row.hostname = hostname.unwrap_or_else(|| ctx.hostname.to_owned());
    row.gpu_uuid = match uuid.filter(|u| !is_masked_uuid(u)) {
        Some(u) => u,
        None => {
            let locator = row
                .pci_bus_id
                .clone()
                .or_else(|| row.device_index.map(|i| format!("index {i}")))
                .unwrap_or_default();
            let u = derive_uuid(&row.hostname, &locator);
            summary.uuids_derived.insert(u.clone());
            u
        }
    };
    Some(row)
}

/// `gpu-health import nvidia-smi`: every file's query-gpu rows into one dump.
pub fn import_nvidia_smi(opts: &NvidiaSmiOptions) -> Result<ImportSummary> {
    let mut out = Output::create(&opts.out, opts.partitions)?;
    let zone = opts.tz.unwrap_or(Zone::Utc);
    match opts.tz {
        Some(z) => out
            .summary
            .note(format!("local timestamps read in {z} (--tz)")),
        None => out.summary.note(
            "local timestamps read as UTC (no --tz given; nvidia-smi prints local time)".into(),
        ),
    }
    let mut hosts_from_names = Vec::new();
    for path in &opts.files {
        let rows = import_file(path, opts, &zone, &mut out.summary)?;
        let file_host = hostname_from_path(path);
        if opts.hostname.is_none() && rows.iter().any(|r| r.hostname == file_host) {
            hosts_from_names.push(file_host);
        }
        out.add_file(rows);
    }
    if let Some(example) = hosts_from_names.first() {
        out.summary.note(format!(
            "host name from the file name for {} file(s) without a hostname value \
             (e.g. {example}); pass --hostname to set it",
            hosts_from_names.len()
        ));
    }
    out.finish()
}

fn import_file(
    path: &Path,
    opts: &NvidiaSmiOptions,
    zone: &Zone,
    summary: &mut ImportSummary,
) -> Result<Vec<Row>> {
    let text = read_text(path)?;
    let hostname = match &opts.hostname {
        Some(h) => h.clone(),
        None => hostname_from_path(path),
    };
    let ctx = FileContext {
        hostname: &hostname,
        zone,
        query_gpu: opts.query_gpu.as_deref(),
    };
    let rows = read_rows(&text, &ctx, summary);
    if rows.is_empty() {
        summary.note(format!("{}: no query-gpu rows", path.display()));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::format_time;
    use crate::import::test_support::real;
    use std::collections::{BTreeSet, HashMap};

    fn read(text: &str, zone: &Zone, query_gpu: Option<&str>) -> (Vec<Row>, ImportSummary) {
        let mut s = ImportSummary::default();
        let ctx = FileContext {
            hostname: "test-host",
            zone,
            query_gpu,
        };
        let rows = read_rows(text, &ctx, &mut s);
        (rows, s)
    }

    #[test]
    fn units_in_headers_and_values_are_stripped() {
        let text = "\
timestamp, name, uuid, index, temperature.gpu, power.draw [W], memory.used [MiB], clocks.current.sm [MHz], utilization.gpu [%], clocks_event_reasons.active
2026/07/03 22:10:46.109, NVIDIA H200, GPU-11111111-2222-3333-4444-555555555555, 0, 41, 77.71 W, 143771 MiB, 1980 MHz, 5 %, 0x0000000000000004
";
        let (rows, s) = read(text, &Zone::Utc, None);
        assert_eq!(rows.len(), 1, "{s}");
        let r = &rows[0];
        assert_eq!(r.gpu_uuid, "GPU-11111111-2222-3333-4444-555555555555");
        assert_eq!(r.gpu_model.as_deref(), Some("NVIDIA H200"));
        assert_eq!(r.num("power_usage"), Some(77.71));
        assert_eq!(r.num("fb_used_bytes"), Some(143771.0 * 1048576.0));
        assert_eq!(r.num("sm_clock_mhz"), Some(1980.0));
        assert_eq!(r.num("gpu_utilization"), Some(5.0));
        assert_eq!(r.num("throttle_reasons"), Some(4.0));
        assert_eq!(r.hostname, "test-host");
        assert!(s.skipped.is_empty(), "{s}");
    }

    #[test]
    fn nounits_noheader_with_the_query_list_given() {
        let q = "timestamp,uuid,index,temperature.gpu,power.draw,memory.total";
        let text = "2026/07/03 22:10:46.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, 0, 41, 77.71, 81559\n\
                    2026/07/03 22:10:47.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, 0, 42, 78.00, 81559\n";
        let (rows, s) = read(text, &Zone::Utc, Some(q));
        assert_eq!(rows.len(), 2, "{s}");
        assert_eq!(rows[1].num("gpu_temp"), Some(42.0));
        assert_eq!(rows[1].num("fb_total_bytes"), Some(81559.0 * 1048576.0));
        // Without the list the lines are counted, not guessed.
        let (rows, s) = read(text, &Zone::Utc, None);
        assert!(rows.is_empty());
        assert_eq!(s.skipped.get(DATA_BEFORE_HEADER), Some(&2));
    }

    #[test]
    fn repeated_headers_reset_the_columns_and_gpus_interleave() {
        let text = "\
timestamp, index, uuid, temperature.gpu
2026/07/03 22:10:46.109, 0, GPU-aaaaaaaa-0000-0000-0000-000000000001, 40
2026/07/03 22:10:46.110, 1, GPU-bbbbbbbb-0000-0000-0000-000000000002, 50
timestamp, uuid, power.draw [W], index, temperature.gpu
2026/07/03 22:10:47.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, 100.5 W, 0, 41
2026/07/03 22:10:47.110, GPU-bbbbbbbb-0000-0000-0000-000000000002, 200.5 W, 1, 51
";
        let (rows, s) = read(text, &Zone::Utc, None);
        assert_eq!(rows.len(), 4, "{s}");
        let b: Vec<&Row> = rows
            .iter()
            .filter(|r| r.gpu_uuid.starts_with("GPU-bbbb"))
            .collect();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].num("gpu_temp"), Some(50.0));
        assert_eq!(b[0].num("power_usage"), None);
        assert_eq!(b[1].num("gpu_temp"), Some(51.0));
        assert_eq!(b[1].num("power_usage"), Some(200.5));
        assert_eq!(b[1].device_index, Some(1));
    }

    #[test]
    fn no_value_markers_leave_the_field_out() {
        let text = "\
timestamp, uuid, temperature.gpu, temperature.memory, power.draw, power.draw.average, power.draw.instant, hostname, remapped_rows.pending, clocks.max.sm
2026/07/03 22:10:46.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, [N/A], [Not Supported], [Unknown Error], N/A, 12.5 W, , Yes, [Requested functionality has been deprecated]
";
        let (rows, s) = read(text, &Zone::Utc, None);
        assert_eq!(rows.len(), 1, "{s}");
        let r = &rows[0];
        assert_eq!(r.num("gpu_temp"), None);
        assert_eq!(r.num("memory_temp"), None);
        assert_eq!(r.num("max_sm_clock_mhz"), None);
        // power.draw and .average absent: the instant reading is used.
        assert_eq!(r.num("power_usage"), Some(12.5));
        assert_eq!(r.get("row_remap_pending"), Some(Val::Bool(true)));
        assert_eq!(r.hostname, "test-host");
        assert!(s.skipped.is_empty(), "{s}");
    }

    #[test]
    fn tz_converts_local_time() {
        let text = "timestamp, uuid, temperature.gpu\n\
                    2026/07/03 22:10:46.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, 40\n";
        for tz in ["Europe/Berlin", "+02:00"] {
            let (rows, _) = read(text, &Zone::parse(tz).unwrap(), None);
            assert_eq!(format_time(&rows[0].time), "2026-07-03T20:10:46.109Z");
        }
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        let text = "\
some banner text
timestamp, uuid, temperature.gpu, power.draw [W]
2026/07/03 22:10:46.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, 40, 70 W
2026/07/03 22:10:47.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, 41
2026/13/45 99:10:48.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, 42, 72 W
2026/07/03 22:10:49.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, hot, 73 W
";
        let (rows, s) = read(text, &Zone::Utc, None);
        assert_eq!(rows.len(), 2, "{s}");
        assert_eq!(rows[1].num("gpu_temp"), None);
        assert_eq!(rows[1].num("power_usage"), Some(73.0));
        assert_eq!(s.skipped.get(FIELD_COUNT), Some(&1));
        assert_eq!(s.skipped.get(BAD_TIME), Some(&1));
        assert_eq!(s.skipped.get(BAD_VALUE), Some(&1));
        assert_eq!(s.skipped.get(NOT_QUERY_GPU), Some(&1));
    }

    #[test]
    fn blocks_end_at_blank_and_comment_lines() {
        let text = "\
# $ nvidia-smi --query-gpu=timestamp,uuid,temperature.gpu --format=csv
timestamp, uuid, temperature.gpu
2026/07/03 22:10:46.109, GPU-aaaaaaaa-0000-0000-0000-000000000001, 40

# $ nvidia-smi --query-compute-apps=timestamp,gpu_uuid,pid --format=csv
timestamp, gpu_uuid, pid
2026/07/03 22:10:46.200, GPU-aaaaaaaa-0000-0000-0000-000000000001, 1234
2026/07/03 22:10:46.200, GPU-aaaaaaaa-0000-0000-0000-000000000001, 1235, extra
";
        let (rows, s) = read(text, &Zone::Utc, None);
        assert_eq!(rows.len(), 1, "{s}");
        let reasons: Vec<&str> = s.skipped.keys().map(String::as_str).collect();
        assert_eq!(reasons, [NOT_QUERY_GPU], "{s}");
        assert_eq!(s.skipped[NOT_QUERY_GPU], 5, "{s}");
    }

    #[test]
    fn masked_uuids_are_derived_from_host_and_bus() {
        let text = "\
timestamp, uuid, pci.bus_id, temperature.gpu
2026/07/03 22:10:46.109, GPU-00000000-0000-0000-0000-000000000000, 00000000:01:00.0, 40
2026/07/03 22:10:46.109, GPU-00000000-0000-0000-0000-000000000000, 00000000:02:00.0, 40
";
        let (rows, s) = read(text, &Zone::Utc, None);
        assert_eq!(
            rows[0].gpu_uuid,
            derive_uuid("test-host", "00000000:01:00.0")
        );
        assert_ne!(rows[0].gpu_uuid, rows[1].gpu_uuid);
        assert_eq!(s.uuids_derived.len(), 2);
    }

    /// The values of a capture's query-gpu blocks, read the naive way: the header is the
    /// line starting `timestamp, driver_version`, the data line the next one; fields
    /// split on ", " (no field in these captures holds a comma).
    fn naive_blocks(text: &str) -> Vec<HashMap<String, String>> {
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("timestamp, driver_version") {
                let names = l
                    .split(", ")
                    .map(|n| n.split(" [").next().unwrap().to_owned());
                let values = lines[i + 1].split(", ").map(str::to_owned);
                out.push(names.zip(values).collect());
            }
        }
        out
    }

    fn leading_number(s: &str) -> f64 {
        s.split(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn every_capture_file_gives_idle_and_load_rows() {
        let Some(dir) = real("nvidia-smi-captures") else {
            return;
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 10);
        let mut uuids = BTreeSet::new();
        for path in &files {
            let text = std::fs::read_to_string(path).unwrap();
            let blocks = naive_blocks(&text);
            assert_eq!(blocks.len(), 2, "{}", path.display());
            let host = hostname_from_path(path);
            let mut s = ImportSummary::default();
            let ctx = FileContext {
                hostname: &host,
                zone: &Zone::Utc,
                query_gpu: None,
            };
            let rows = read_rows(&text, &ctx, &mut s);
            assert_eq!(rows.len(), 2, "{}: {s}", path.display());
            // Everything else in a capture is other output, not a malformed line.
            let reasons: Vec<&str> = s.skipped.keys().map(String::as_str).collect();
            assert_eq!(reasons, [NOT_QUERY_GPU], "{}: {s}", path.display());
            for (row, block) in rows.iter().zip(&blocks) {
                assert_eq!(row.gpu_model.as_deref(), Some(block["name"].as_str()));
                let t = block["timestamp"].replace('/', "-").replace(' ', "T");
                assert_eq!(format_time(&row.time), format!("{t}Z"));
                assert_eq!(
                    row.num("power_usage"),
                    Some(leading_number(&block["power.draw"]))
                );
                assert_eq!(
                    row.num("power_limit"),
                    Some(leading_number(&block["enforced.power.limit"]))
                );
                assert_eq!(
                    row.num("max_sm_clock_mhz"),
                    Some(leading_number(&block["clocks.max.sm"]))
                );
                let temp = leading_number(&block["temperature.gpu"]);
                assert_eq!(row.num("gpu_temp"), Some(temp));
                if let Ok(margin) = block["temperature.gpu.tlimit"].parse::<f64>() {
                    assert_eq!(row.num("gpu_temp_tlimit"), Some(margin));
                }
                assert_eq!(row.hostname, host);
                uuids.insert(row.gpu_uuid.clone());
            }
            assert_eq!(rows[0].gpu_uuid, rows[1].gpu_uuid);
        }
        assert_eq!(uuids.len(), 10);
    }

    /// The independently converted dump of the captures: same gpu_temp, power_usage,
    /// sm_clock_mhz and throttle_reasons for the same instant and model. Its times carry
    /// the capture's offset; reading each file in that offset must give the same instant.
    #[test]
    fn captures_match_the_reference_dump() {
        let (Some(dir), Some(dump)) = (
            real("nvidia-smi-captures"),
            real("nvidia-smi-captures.dump.jsonl.gz"),
        ) else {
            return;
        };
        let reader = crate::dump::open_dump(&dump).unwrap();
        let mut reference = Vec::new();
        for line in std::io::BufRead::lines(reader) {
            let rec: crate::dump::DumpRecord = serde_json::from_str(&line.unwrap()).unwrap();
            let v: serde_json::Value = serde_json::from_str(rec.value.as_deref().unwrap()).unwrap();
            reference.push(v);
        }
        assert_eq!(reference.len(), 20);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let mut matched = 0;
        for v in &reference {
            let time = chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
            let zone = Zone::Fixed(*time.offset());
            let found: Vec<Row> = files
                .iter()
                .flat_map(|p| {
                    let text = std::fs::read_to_string(p).unwrap();
                    let mut s = ImportSummary::default();
                    let ctx = FileContext {
                        hostname: "h",
                        zone: &zone,
                        query_gpu: None,
                    };
                    read_rows(&text, &ctx, &mut s)
                })
                .filter(|r| r.time == time && r.gpu_model.as_deref() == v["gpu_model"].as_str())
                .collect();
            assert_eq!(found.len(), 1, "{v}");
            let r = &found[0];
            assert_eq!(r.num("gpu_temp"), v["gpu_temp"].as_f64(), "{v}");
            assert_eq!(r.num("power_usage"), v["power_usage"].as_f64(), "{v}");
            assert_eq!(r.num("sm_clock_mhz"), v["sm_clock_mhz"].as_f64(), "{v}");
            assert_eq!(
                r.num("throttle_reasons"),
                v["throttle_reasons"].as_f64(),
                "{v}"
            );
            matched += 1;
        }
        assert_eq!(matched, 20);
    }
}
