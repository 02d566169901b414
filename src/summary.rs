//! The fleet summary printed at the end of a run: the books, GPUs per grade, and the
//! worst GPUs with the factors that cost them points.

use std::fmt::Write;

use crate::event::decode::fmt_time;
use crate::health::ScoredDay;
use crate::health::model::{GRADE_CRITICAL, GRADE_INSUFFICIENT, GRADE_MISSING, GRADES};
use crate::health::predict::predict;
use crate::pipeline::RunReport;

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renders the summary as text.
pub fn render(r: &RunReport, output: &str, worst: usize) -> String {
    let mut o = String::new();
    let rate = r.messages as f64 / r.elapsed_s.max(1e-9);
    let _ = writeln!(
        o,
        "processed {} messages in {:.2} s ({} msg/s)",
        thousands(r.messages),
        r.elapsed_s,
        thousands(rate as u64)
    );
    let dead: u64 = r.hard_dead_letters();
    let _ = writeln!(
        o,
        "books: {} messages = {} raw rows + {} dead letters + {} duplicates  [{}]",
        thousands(r.messages),
        thousands(r.raw_rows),
        thousands(dead),
        thousands(r.duplicates),
        if r.books_balance() {
            "balanced"
        } else {
            "NOT BALANCED"
        }
    );
    let reasons: Vec<String> = r
        .dead_letters
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        o,
        "dead letters by reason: {}",
        if reasons.is_empty() {
            "none".into()
        } else {
            reasons.join(", ")
        }
    );
    let soft: Vec<String> = r
        .soft_errors
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        o,
        "soft validation: {} rows kept with NULLed metrics ({})",
        thousands(r.invalid_rows),
        if soft.is_empty() {
            "none".into()
        } else {
            soft.join(", ")
        }
    );
    let _ = writeln!(
        o,
        "late events merged: {} ({} into already emitted windows) | too late for rollups: {}",
        thousands(r.late_events),
        thousands(r.late_updates),
        thousands(r.too_late)
    );
    let _ = writeln!(
        o,
        "rows written: gpu_metrics {} | gpu_metrics_1min {} | gpu_metrics_15min {} | gpu_health_scores {} | gpu_failure_predictions {}",
        thousands(r.raw_rows),
        thousands(r.rollup_1m_rows),
        thousands(r.rollup_15m_rows),
        thousands(r.score_rows),
        thousands(r.prediction_rows)
    );
    if let Some(l) = &r.latency {
        let _ = writeln!(
            o,
            "latency, Kafka timestamp to stored: p50 {} ms | p99 {} ms | max {} ms ({} messages)",
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            thousands(l.messages)
        );
    }
    if r.topic_messages > 0 {
        let _ = writeln!(
            o,
            "output topics: {} messages acknowledged",
            thousands(r.topic_messages)
        );
    }
    let _ = writeln!(o, "output: {output}");
    let _ = writeln!(o);

    let latest_day = r.latest.iter().map(|d| d.day_start_us).max();
    let _ = writeln!(
        o,
        "fleet health: {} GPUs seen{}",
        r.gpus.len(),
        latest_day
            .map(|d| format!(", latest day {}", &fmt_time(d)[..10]))
            .unwrap_or_default()
    );
    let mut grades: Vec<&str> = GRADES.iter().map(|g| g.1).collect();
    grades.extend([GRADE_CRITICAL, GRADE_INSUFFICIENT, GRADE_MISSING]);
    let counts: Vec<String> = grades
        .iter()
        .map(|g| {
            format!(
                "{g} {}",
                r.latest.iter().filter(|d| d.score.grade == *g).count()
            )
        })
        .collect();
    let _ = writeln!(o, "latest day of each GPU:\n  {}", counts.join(" | "));
    let all: Vec<String> = grades
        .iter()
        .map(|g| format!("{g} {}", r.grades.get(g).copied().unwrap_or(0)))
        .collect();
    let _ = writeln!(o, "all GPU-days of the run:\n  {}", all.join(" | "));
    let mut by_score: Vec<_> = r.latest.iter().filter(|d| d.score.is_scored()).collect();
    by_score.sort_by(|a, b| {
        let o = |d: &&ScoredDay| d.score.overall.unwrap_or(f64::INFINITY);
        o(a).total_cmp(&o(b))
    });
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "worst GPUs (latest day; p30d: failure probability within 30 days):"
    );
    let _ = writeln!(
        o,
        "  {:<42} {:<14} {:<10} {:<9} {:>5} {:>6}  factors",
        "gpu_uuid", "hostname", "day", "grade", "score", "p30d"
    );
    for d in by_score.iter().take(worst) {
        let info = r.gpus.get(d.gpu as usize);
        let mut why: Vec<String> = d
            .score
            .gates
            .iter()
            .map(|g| format!("gate:{}", g.name))
            .collect();
        why.extend(
            d.score
                .factors
                .iter()
                .take(3)
                .map(|f| format!("{}={}", f.name, short(f.value))),
        );
        if !d.score.unscored.is_empty() {
            why.push("limits_unknown".into());
        }
        let _ = writeln!(
            o,
            "  {:<42} {:<14} {:<10} {:<9} {:>5.1} {:>5.1}%  {}",
            info.map_or("?", |i| i.uuid.as_str()),
            info.map_or("?", |i| i.hostname.as_str()),
            &fmt_time(d.day_start_us)[..10],
            d.score.grade,
            d.score.overall.unwrap_or(f64::NAN),
            predict(d).p_fail[1] * 100.0,
            if why.is_empty() {
                "-".into()
            } else {
                why.join(", ")
            }
        );
    }
    // GPUs without a verdict on their latest day: too little data, or silent.
    let unscored: Vec<_> = r.latest.iter().filter(|d| !d.score.is_scored()).collect();
    if !unscored.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "not graded on their latest day (covered time, or last seen):"
        );
        for d in unscored.iter().take(worst.max(20)) {
            let info = r.gpus.get(d.gpu as usize);
            let what = if d.score.grade == GRADE_MISSING {
                format!(
                    "last seen {}",
                    d.features.last_seen_us.map_or("?".into(), fmt_time)
                )
            } else {
                format!(
                    "{:.0} s of {:.0} s covered, every {} s",
                    d.features.covered_s,
                    d.features.expected_span_s,
                    short(d.features.interval_s)
                )
            };
            let _ = writeln!(
                o,
                "  {:<42} {:<14} {:<10} {:<17} {}",
                info.map_or("?", |i| i.uuid.as_str()),
                info.map_or("?", |i| i.hostname.as_str()),
                &fmt_time(d.day_start_us)[..10],
                d.score.grade,
                what
            );
        }
        if unscored.len() > worst.max(20) {
            let _ = writeln!(o, "  ... and {} more", unscored.len() - worst.max(20));
        }
    }
    o
}

fn short(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() < 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}
