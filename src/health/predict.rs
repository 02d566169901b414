//! Failure probability per scored GPU-day (HEALTH_MODEL.md, table
//! `gpu_failure_predictions`): a proportional-hazards model with a published baseline
//! and prior coefficients, transparent by construction.
//!
//! `p(fail within t days) = 1 - exp(-LAMBDA0 * HR * t / 365)`, `HR = exp(sum beta_i x_i)`.
//! Every x_i is zero for a GPU with no risk signal, so such a GPU gets the baseline
//! (about 0.21 %, 0.91 % and 2.7 % at 7, 30 and 90 days). The betas are priors, not
//! fitted: each states its reasoning below. Expect modest precision (ByteDance's
//! telemetry models reached 46 % before ensembling); `confidence` speaks to the data
//! behind a row, not to the model's precision. A fitted model can replace the
//! constants without changing the table (`model_name` / `model_version`).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::daily::ScoredDay;
use super::model::Dimension;
use crate::event::schema::time_type;
use crate::window::fleet::GpuInfo;

pub const MODEL_NAME: &str = "gpu-health-ph";
pub const MODEL_VERSION: &str = "1";

/// Baseline GPU-attributed failures per GPU-year: Meta's Llama 3 run saw 268
/// GPU-attributed interruptions in 54 days on 16,384 H100s:
/// 268 / (16,384 x 54 / 365) = 0.1106.
pub const LAMBDA0_PER_GPU_YEAR: f64 = 268.0 / (16_384.0 * 54.0 / 365.0);

/// Horizons of the three probabilities, in days.
pub const HORIZONS_DAYS: [f64; 3] = [7.0, 30.0, 90.0];

/// One risk signal: its name, the dimension it speaks for, and its prior.
#[derive(Debug, Clone, Copy)]
pub struct Term {
    pub name: &'static str,
    /// The dimension a failure driven by this term would show in; `None` for the
    /// score slope, which speaks for the day's weakest dimension.
    pub dimension: Option<Dimension>,
    pub beta: f64,
}

/// The priors, in the order of `x`.
pub const TERMS: [Term; 6] = [
    // Days in the last 30 with an uncorrectable (DBE) memory error, capped at 5. HBM
    // faults were 72 of Meta's 268 GPU interruptions, and a DBE is the event that
    // precedes them; repeats on separate days mean a failing stack, not a one-off
    // (1 day: HR 2.0, 3 days: 8.2, 5+: 33).
    Term {
        name: "dbe_days",
        dimension: Some(Dimension::Memory),
        beta: 0.7,
    },
    // ln(1 + retired pages): retirement is how the driver copes with failing memory
    // cells; each doubling adds the same risk, and 64 pages (the retirement limit on
    // pre-Ampere parts) gives HR 8.
    Term {
        name: "retired_pages",
        dimension: Some(Dimension::Memory),
        beta: 0.5,
    },
    // log10(1 + single-bit errors that day): correctable, but bursts of them mark
    // weakening cells (1,000 a day: HR 3.3).
    Term {
        name: "sbe_rate",
        dimension: Some(Dimension::Memory),
        beta: 0.4,
    },
    // Share of the day's samples with thermal throttling (0..1). Titan's 18,688-GPU
    // study found failures tracking heat dissipation (all day throttled: HR 4.5).
    Term {
        name: "thermal_throttling",
        dimension: Some(Dimension::Thermal),
        beta: 1.5,
    },
    // Share of the day without data (1 - coverage). A GPU that falls off the bus
    // (Xid 79) shows up as a gap first (a silent day: HR 4.5).
    Term {
        name: "data_gaps",
        dimension: Some(Dimension::Reliability),
        beta: 1.5,
    },
    // Score decline in points per day over the last 30 days (least-squares slope),
    // capped at 10, once there are `SLOPE_MIN_HISTORY_DAYS` of history: a slope over
    // two or three days mostly restates the signals above that made the score drop.
    // A GPU losing 5 points a day for a week doubles its hazard.
    Term {
        name: "score_slope",
        dimension: None,
        beta: 0.15,
    },
];

/// Days of history before the score slope counts.
pub const SLOPE_MIN_HISTORY_DAYS: u32 = 7;

/// One row of `gpu_failure_predictions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub p_fail: [f64; 3],
    pub hazard_ratio: f64,
    pub predicted_failure_type: Option<&'static str>,
    pub estimated_ttf_days: f64,
    pub confidence: f64,
    /// Each term's share of log HR (empty when no term contributes).
    pub feature_importance: Vec<(&'static str, f64)>,
}

/// The term values of a scored day, in the order of `TERMS`.
pub fn term_values(d: &ScoredDay) -> [f64; 6] {
    let f = &d.features;
    [
        f64::from(f.dbe_days_30.min(5)),
        (f.retired_pages.unwrap_or(0).max(0) as f64).ln_1p(),
        (f.sbe_increase.unwrap_or(0).max(0) as f64 + 1.0).log10(),
        f.thermal_share.unwrap_or(0.0).clamp(0.0, 1.0),
        (1.0 - f.coverage).clamp(0.0, 1.0),
        match d.degradation_rate {
            Some(s) if d.history_days >= SLOPE_MIN_HISTORY_DAYS => (-s).clamp(0.0, 10.0),
            _ => 0.0,
        },
    ]
}

/// `confidence` in 0..1: the day's coverage, discounted while the GPU has less than
/// 30 days of history (the slope and the DBE-day count need them): half weight for
/// one day of history, full weight from 30 on.
pub fn confidence(coverage: f64, history_days: u32) -> f64 {
    let history = (f64::from(history_days) / 30.0).min(1.0);
    coverage.clamp(0.0, 1.0) * (0.5 + 0.5 * history)
}

pub fn predict(d: &ScoredDay) -> Prediction {
    let x = term_values(d);
    let contributions: Vec<f64> = TERMS.iter().zip(x).map(|(t, v)| t.beta * v).collect();
    let log_hr: f64 = contributions.iter().sum();
    let hr = log_hr.exp();
    let rate_per_day = LAMBDA0_PER_GPU_YEAR * hr / 365.0;
    let p_fail = HORIZONS_DAYS.map(|t| 1.0 - (-rate_per_day * t).exp());
    let mut feature_importance = Vec::new();
    let mut top: Option<(usize, f64)> = None;
    if log_hr > 0.0 {
        for (i, (t, c)) in TERMS.iter().zip(&contributions).enumerate() {
            if *c > 0.0 {
                feature_importance.push((t.name, c / log_hr));
                if top.is_none_or(|(_, b)| *c > b) {
                    top = Some((i, *c));
                }
            }
        }
    }
    let predicted_failure_type = top.map(|(i, _)| {
        TERMS[i]
            .dimension
            .or_else(|| d.score.weakest())
            .unwrap_or(Dimension::Reliability)
            .as_str()
    });
    Prediction {
        p_fail,
        hazard_ratio: hr,
        predicted_failure_type,
        estimated_ttf_days: std::f64::consts::LN_2 / rate_per_day,
        confidence: confidence(d.features.coverage, d.history_days),
        feature_importance,
    }
}

pub fn predictions_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("time", time_type(), false),
        Field::new("gpu_uuid", DataType::Utf8, false),
        Field::new("model_name", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, true),
    ];
    for name in ["p_fail_7d", "p_fail_30d", "p_fail_90d", "hazard_ratio"] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    fields.push(Field::new("predicted_failure_type", DataType::Utf8, true));
    for name in ["estimated_ttf_days", "confidence"] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    fields.push(crate::db::copy::jsonb_field("feature_importance"));
    Arc::new(Schema::new(fields))
}

/// Predicts every scored day (not `missing` or `insufficient_data` ones: no verdict,
/// no prediction) and lays the rows out as one batch.
pub fn predictions_to_batch(
    days: &[ScoredDay],
    gpus: &[GpuInfo],
) -> Result<RecordBatch, ArrowError> {
    let mut time = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut text: [StringBuilder; 5] = std::array::from_fn(|_| StringBuilder::new());
    let mut floats: [Float64Builder; 6] = std::array::from_fn(|_| Float64Builder::new());
    for d in days.iter().filter(|d| d.score.is_scored()) {
        let p = predict(d);
        time.append_value(d.day_start_us);
        text[0].append_value(gpus.get(d.gpu as usize).map_or("", |i| i.uuid.as_str()));
        text[1].append_value(MODEL_NAME);
        text[2].append_value(MODEL_VERSION);
        text[3].append_option(p.predicted_failure_type);
        let importance: serde_json::Map<String, serde_json::Value> = p
            .feature_importance
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
            .collect();
        text[4].append_value(serde_json::Value::Object(importance).to_string());
        let values = [
            p.p_fail[0],
            p.p_fail[1],
            p.p_fail[2],
            p.hazard_ratio,
            p.estimated_ttf_days,
            p.confidence,
        ];
        for (b, v) in floats.iter_mut().zip(values) {
            b.append_value(v);
        }
    }
    let [uuid, name, version, kind, importance] = &mut text;
    let [p7, p30, p90, hr, ttf, conf] = &mut floats;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(uuid.finish()),
        Arc::new(name.finish()),
        Arc::new(version.finish()),
        Arc::new(p7.finish()),
        Arc::new(p30.finish()),
        Arc::new(p90.finish()),
        Arc::new(hr.finish()),
        Arc::new(kind.finish()),
        Arc::new(ttf.finish()),
        Arc::new(conf.finish()),
        Arc::new(importance.finish()),
    ];
    RecordBatch::try_new(predictions_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::limits::{SampleLimits, resolve};
    use crate::health::model::{DayFeatures, score_day};

    fn day(features: DayFeatures, slope: Option<f64>, history_days: u32) -> ScoredDay {
        ScoredDay {
            gpu: 0,
            day_start_us: 0,
            score: score_day(&features),
            features,
            delta_7d: None,
            delta_30d: None,
            degradation_rate: slope,
            history_days,
        }
    }

    fn quiet() -> DayFeatures {
        DayFeatures {
            limits: resolve(&SampleLimits::default(), Some("NVIDIA H100 80GB HBM3")),
            samples: 8640,
            coverage: 1.0,
            sbe_increase: Some(0),
            dbe_increase: Some(0),
            retired_pages: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn a_gpu_without_risk_signals_gets_the_published_baseline() {
        let p = predict(&day(quiet(), Some(0.5), 30));
        // HEALTH_MODEL.md: about 0.21 %, 0.91 % and 2.7 % at 7, 30 and 90 days.
        assert!((p.p_fail[0] - 0.0021).abs() < 0.00005, "{:?}", p.p_fail);
        assert!((p.p_fail[1] - 0.0091).abs() < 0.0001, "{:?}", p.p_fail);
        assert!((p.p_fail[2] - 0.027).abs() < 0.0005, "{:?}", p.p_fail);
        assert_eq!(p.hazard_ratio, 1.0);
        assert_eq!(p.predicted_failure_type, None);
        assert!(p.feature_importance.is_empty());
        // Median of an exponential with 0.1106 failures per year: ln 2 / 0.1106 years.
        assert!((p.estimated_ttf_days - 2288.25).abs() < 0.1);
        assert_eq!(p.confidence, 1.0);
    }

    #[test]
    fn dbe_days_and_throttling_worked_by_hand() {
        // log HR = 0.7 x 2 + 1.5 x 0.5 = 2.15, HR = e^2.15 = 8.5849; worked out apart
        // from this code: p30 = 1 - exp(-0.110564 x 8.5849 x 30 / 365) = 0.075049.
        let f = DayFeatures {
            dbe_days_30: 2,
            thermal_share: Some(0.5),
            ..quiet()
        };
        let p = predict(&day(f, None, 30));
        assert!((p.hazard_ratio - 8.58486).abs() < 1e-4);
        assert!((p.p_fail[0] - 0.018039).abs() < 1e-5);
        assert!((p.p_fail[1] - 0.075049).abs() < 1e-5);
        assert!((p.p_fail[2] - 0.208673).abs() < 1e-5);
        assert!((p.estimated_ttf_days - 266.545).abs() < 0.01);
        assert_eq!(p.predicted_failure_type, Some("memory"));
        assert_eq!(p.feature_importance.len(), 2);
        assert_eq!(p.feature_importance[0].0, "dbe_days");
        assert!((p.feature_importance[0].1 - 1.4 / 2.15).abs() < 1e-12);
        assert!((p.feature_importance[1].1 - 0.75 / 2.15).abs() < 1e-12);
    }

    #[test]
    fn a_silent_day_points_at_reliability_and_a_declining_score_at_the_weakest_dimension() {
        let silent = DayFeatures {
            coverage: 0.0,
            samples: 0,
            ..quiet()
        };
        let p = predict(&day(silent, None, 30));
        assert!((p.hazard_ratio - 1.5f64.exp()).abs() < 1e-9);
        assert_eq!(p.predicted_failure_type, Some("reliability"));
        assert_eq!(p.confidence, 0.0);

        let hot = DayFeatures {
            gpu_temp_p95: Some(95.0),
            gpu_temp_max: Some(97.0),
            ..quiet()
        };
        let d = day(hot.clone(), Some(-8.0), 10);
        assert!((predict(&d).hazard_ratio - (0.15f64 * 8.0).exp()).abs() < 1e-9);
        assert!(d.score.thermal < d.score.memory);
        assert_eq!(predict(&d).predicted_failure_type, Some("thermal"));
        assert!((predict(&d).confidence - (0.5 + 0.5 * 10.0 / 30.0)).abs() < 1e-12);
        // Below a week of history the slope does not count; one day: half confidence.
        let young = predict(&day(hot, Some(-8.0), 1));
        assert_eq!(young.hazard_ratio, 1.0);
        assert!((young.confidence - (0.5 + 0.5 / 30.0)).abs() < 1e-12);
    }

    #[test]
    fn risk_never_lowers_the_baseline_and_probabilities_grow_with_the_horizon() {
        let f = DayFeatures {
            retired_pages: Some(64),
            sbe_increase: Some(999),
            ..quiet()
        };
        let p = predict(&day(f, Some(3.0), 10));
        // ln(65) x 0.5 + log10(1000) x 0.4 = 2.0872 + 1.2; a rising score adds nothing.
        assert!((p.hazard_ratio.ln() - (0.5 * 65f64.ln() + 1.2)).abs() < 1e-9);
        assert!(p.p_fail[0] < p.p_fail[1] && p.p_fail[1] < p.p_fail[2]);
        let sum: f64 = p.feature_importance.iter().map(|x| x.1).sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }
}
