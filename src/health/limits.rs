//! The limits a GPU is judged against (HEALTH_MODEL.md, "Model limits"): the GPU's own
//! values from its samples first, then a table of NVIDIA models, never a guess.
//!
//! Each table row cites where its numbers come from: the NVIDIA datasheet, or
//! `nvidia-smi -q` output of that model (the captures in `../shared/real-telemetry/`
//! among them). A value no source gives is `None`, and the factors that need it are
//! not scored (`limits_unknown`) rather than judged against a stand-in.

use std::fmt::Write;

/// One model's limits, as its sources give them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelRow {
    /// The row's name in scores and docs.
    pub name: &'static str,
    /// Matched against the normalised model string (`normalise`), first row wins, so
    /// the more specific rows come first.
    pub keys: &'static [&'static str],
    /// Maximum board power (TDP), W.
    pub power_w: Option<f64>,
    /// Maximum (boost) SM clock, MHz.
    pub max_sm_clock_mhz: Option<f64>,
    /// GPU slowdown temperature, C.
    pub slowdown_c: Option<f64>,
    /// Memory maximum operating temperature, C.
    pub memory_max_c: Option<f64>,
    /// Where the numbers come from.
    pub source: &'static str,
}

const fn row(
    name: &'static str,
    keys: &'static [&'static str],
    power_w: Option<f64>,
    max_sm_clock_mhz: Option<f64>,
    slowdown_c: Option<f64>,
    memory_max_c: Option<f64>,
    source: &'static str,
) -> ModelRow {
    ModelRow {
        name,
        keys,
        power_w,
        max_sm_clock_mhz,
        slowdown_c,
        memory_max_c,
        source,
    }
}

/// The table. Keys are upper case, with `-` and `_` read as spaces and the `NVIDIA ` /
/// `TESLA ` prefixes dropped (see `normalise`).
pub const TABLE: &[ModelRow] = &include!("limits_table.rs");

/// Where a limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// The GPU's own samples that day.
    Sample,
    /// The table row of this name.
    Table(&'static str),
}

/// One limit and its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub value: f64,
    pub source: LimitSource,
}

/// The limits a GPU-day is judged against; `None` where neither the samples nor the
/// table know the value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub power_w: Option<Limit>,
    pub slowdown_c: Option<Limit>,
    pub memory_max_c: Option<Limit>,
    pub max_sm_clock_mhz: Option<Limit>,
}

/// Limits the GPU reported that day (the largest value seen of each).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampleLimits {
    pub power_w: Option<f64>,
    pub slowdown_c: Option<f64>,
    pub memory_max_c: Option<f64>,
    pub max_sm_clock_mhz: Option<f64>,
}

impl Limits {
    /// `power=sample slowdown=table:H100 SXM5 memory=unknown clock=...`, for the
    /// `limits_source` column.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (name, l) in [
            ("power", self.power_w),
            ("slowdown", self.slowdown_c),
            ("memory", self.memory_max_c),
            ("clock", self.max_sm_clock_mhz),
        ] {
            if !out.is_empty() {
                out.push(' ');
            }
            let _ = match l.map(|l| l.source) {
                Some(LimitSource::Sample) => write!(out, "{name}=sample"),
                Some(LimitSource::Table(row)) => write!(out, "{name}=table:{row}"),
                None => write!(out, "{name}=unknown"),
            };
        }
        out
    }
}

/// Upper case, `-` and `_` as spaces, single spaces, without `NVIDIA ` / `TESLA `.
pub fn normalise(model: &str) -> String {
    let up: String = model
        .chars()
        .map(|c| match c {
            '-' | '_' => ' ',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    let words: Vec<&str> = up
        .split_whitespace()
        .filter(|w| *w != "NVIDIA" && *w != "TESLA")
        .collect();
    words.join(" ")
}

/// The table row of a reported model string.
pub fn row_for(model: &str) -> Option<&'static ModelRow> {
    let m = format!(" {} ", normalise(model));
    TABLE
        .iter()
        .find(|r| r.keys.iter().any(|k| m.contains(&format!(" {k} "))))
}

/// The limits of a GPU-day: its samples first, then its model's row.
pub fn resolve(sample: &SampleLimits, model: Option<&str>) -> Limits {
    let row = model.and_then(row_for);
    let pick = |own: Option<f64>, table: Option<f64>| -> Option<Limit> {
        own.map(|value| Limit {
            value,
            source: LimitSource::Sample,
        })
        .or_else(|| {
            let r = row?;
            table.map(|value| Limit {
                value,
                source: LimitSource::Table(r.name),
            })
        })
    };
    Limits {
        power_w: pick(sample.power_w, row.and_then(|r| r.power_w)),
        slowdown_c: pick(sample.slowdown_c, row.and_then(|r| r.slowdown_c)),
        memory_max_c: pick(sample.memory_max_c, row.and_then(|r| r.memory_max_c)),
        max_sm_clock_mhz: pick(
            sample.max_sm_clock_mhz,
            row.and_then(|r| r.max_sm_clock_mhz),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn power(model: &str) -> Option<f64> {
        row_for(model).and_then(|r| r.power_w)
    }

    #[test]
    fn reported_model_strings_find_their_rows() {
        // Strings as nvidia-smi / NVML print them (the captures, and the HEALTH_MODEL
        // rows); expected values are the datasheets' (independent of the table text).
        assert_eq!(power("NVIDIA H100 80GB HBM3"), Some(700.0));
        assert_eq!(power("NVIDIA H100 PCIe"), Some(350.0));
        assert_eq!(power("NVIDIA H200"), Some(700.0));
        assert_eq!(power("NVIDIA A100-SXM4-80GB"), Some(400.0));
        assert_eq!(power("NVIDIA A100 80GB PCIe"), Some(300.0));
        assert_eq!(power("NVIDIA A100-PCIE-40GB"), Some(250.0));
        assert_eq!(power("NVIDIA L40S"), Some(350.0));
        assert_eq!(power("Tesla V100-SXM2-32GB"), Some(300.0));
        assert_eq!(power("Tesla V100-PCIE-16GB"), Some(250.0));
        assert_eq!(power("Tesla V100S-PCIE-32GB"), Some(250.0));
        assert_eq!(power("Tesla T4"), Some(70.0));
        assert_eq!(power("NVIDIA L4"), Some(72.0));
        assert_eq!(power("NVIDIA A10G"), Some(300.0));
        assert_eq!(power("NVIDIA A10"), Some(150.0));
        assert_eq!(power("NVIDIA GH200 480GB"), Some(900.0));
        assert_eq!(power("NVIDIA H100 NVL"), Some(400.0));
        assert_eq!(power("NVIDIA B200"), Some(1000.0));
        assert_eq!(power("NVIDIA GB200"), None);
        assert_eq!(power("NVIDIA GeForce RTX 4090"), None);
        assert_eq!(row_for("NVIDIA L40").map(|r| r.name), Some("L40"));
        assert!(row_for("Some Future GPU 9000").is_none());
    }

    #[test]
    fn samples_come_before_the_table_and_nothing_is_guessed() {
        let s = SampleLimits {
            power_w: Some(650.0),
            slowdown_c: Some(89.0),
            ..Default::default()
        };
        let l = resolve(&s, Some("NVIDIA H200"));
        assert_eq!(
            l.power_w.map(|l| (l.value, l.source)),
            Some((650.0, LimitSource::Sample))
        );
        assert_eq!(l.slowdown_c.map(|l| l.value), Some(89.0));
        assert!(matches!(
            l.max_sm_clock_mhz.map(|l| l.source),
            Some(LimitSource::Table(_))
        ));
        let unknown = resolve(&SampleLimits::default(), Some("Some Future GPU 9000"));
        assert_eq!(unknown, Limits::default());
        assert_eq!(
            unknown.describe(),
            "power=unknown slowdown=unknown memory=unknown clock=unknown"
        );
    }

    #[test]
    fn the_documented_table_is_this_table() {
        // docs/health-model.md section 6 lists every row with its numbers.
        let doc = include_str!("../../docs/health-model.md");
        let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |x| x.to_string());
        for r in TABLE {
            let line = doc
                .lines()
                .find(|l| l.starts_with(&format!("| {} |", r.name)))
                .unwrap_or_else(|| panic!("docs/health-model.md lacks the row {}", r.name));
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(cells[2], fmt(r.power_w), "{}: power", r.name);
            assert_eq!(cells[3], fmt(r.max_sm_clock_mhz), "{}: clock", r.name);
            if let Some(t) = r.slowdown_c {
                assert_eq!(cells[4], t.to_string(), "{}: slowdown", r.name);
            }
            if let Some(t) = r.memory_max_c {
                assert_eq!(cells[5], t.to_string(), "{}: memory", r.name);
            }
        }
    }

    #[test]
    fn every_row_cites_a_source_and_is_reachable() {
        for (i, r) in TABLE.iter().enumerate() {
            assert!(!r.source.is_empty(), "{} has no source", r.name);
            // Each row is found by its own first key (an earlier row does not shadow it).
            let found = row_for(r.keys[0]).map(|f| f.name);
            assert_eq!(found, Some(r.name), "row {i} ({}) is shadowed", r.name);
        }
    }
}
