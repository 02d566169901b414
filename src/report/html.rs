//! `gpu-health report html`: one self-contained page (inline CSS and SVG, no script,
//! nothing fetched) with the fleet's temperature trend, GPUs per grade per day, the
//! worst GPUs' score histories and ECC events, beside the fleet, degrading-GPU and ECC
//! tables. Plots are drawn server-side with plotters, so the page opens anywhere,
//! also offline and from a mail attachment.

use std::fmt::Write;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use plotters::prelude::*;

use super::{Cell, Query, Store, Table};

/// What the page covers.
#[derive(Debug, Clone)]
pub struct HtmlOptions {
    /// Days of history in the trend plots, back from the newest data.
    pub days: u32,
    /// How many of the worst GPUs get a score history.
    pub worst: u32,
}

/// One plotted line: a name and (time, value) points.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 360;

/// Grades best to worst, with the colours the page uses for them.
const GRADE_COLOURS: [(&str, RGBColor); 8] = [
    ("excellent", RGBColor(26, 152, 80)),
    ("good", RGBColor(145, 207, 96)),
    ("fair", RGBColor(230, 200, 60)),
    ("degraded", RGBColor(252, 141, 89)),
    ("poor", RGBColor(215, 48, 39)),
    ("critical", RGBColor(120, 0, 40)),
    ("insufficient_data", RGBColor(170, 170, 170)),
    ("missing", RGBColor(90, 90, 90)),
];

/// Renders the page from the store.
pub async fn render(store: &Store, opts: &HtmlOptions) -> Result<String> {
    let hours = opts.days.max(1) * 24;
    let temperature = store.run(&Query::Temperature { gpu: None, hours }).await?;
    let grades = store
        .sql(
            &format!(
                "SELECT time AS day, grade, count(*) AS gpus FROM gpu_health_scores
                 WHERE time > (SELECT max(time) FROM gpu_health_scores) - INTERVAL '{hours} hours'
                 GROUP BY time, grade ORDER BY day"
            ),
            None,
        )
        .await
        .context("grades per day")?;
    let histories = store
        .sql(
            &format!(
                "SELECT time AS day, gpu_uuid, hostname, overall_score FROM gpu_health_scores
                 WHERE gpu_uuid IN (SELECT gpu_uuid FROM gpu_health_scores
                                    WHERE time = (SELECT max(time) FROM gpu_health_scores)
                                    ORDER BY overall_score, gpu_uuid LIMIT {})
                   AND time > (SELECT max(time) FROM gpu_health_scores) - INTERVAL '{hours} hours'
                 ORDER BY day",
                opts.worst
            ),
            None,
        )
        .await
        .context("the worst GPUs' score histories")?;
    let ecc_trend = store
        .sql(
            &format!(
                "SELECT time, CAST(sum(ecc_sbe_delta) AS BIGINT) AS sbe,
                        CAST(sum(ecc_dbe_delta) AS BIGINT) AS dbe,
                        CAST(sum(retired_pages_delta) AS BIGINT) AS retired_pages
                 FROM gpu_metrics_15min
                 WHERE time > (SELECT max(time) FROM gpu_metrics_15min) - INTERVAL '{hours} hours'
                 GROUP BY time ORDER BY time"
            ),
            None,
        )
        .await
        .context("ECC events per 15 minutes")?;
    let fleet = store.run(&Query::Fleet).await?;
    let degrading = store.run(&Query::Degrading { limit: 10 }).await?;
    let ecc = store.run(&Query::Ecc { hours, limit: 20 }).await?;

    let temp_plot = line_plot(
        "Fleet GPU temperature per 15 minutes",
        "°C",
        &[
            series(&temperature, "time", "gpu_temp_avg", "mean of GPU means")?,
            series(&temperature, "time", "gpu_temp_max", "hottest GPU")?,
        ],
        &[RGBColor(49, 130, 189), RGBColor(222, 45, 38)],
    )?;
    let (grade_series, grade_colours) = by_grade(&grades)?;
    let grade_plot = line_plot(
        "GPUs per grade per day",
        "GPUs",
        &grade_series,
        &grade_colours,
    )?;
    let worst_series = by_key(&histories, "gpu_uuid", "day", "overall_score")?;
    let worst_plot = line_plot(
        &format!("Score history of the {} worst GPUs", worst_series.len()),
        "overall score",
        &worst_series,
        &[],
    )?;
    let ecc_plot = line_plot(
        "ECC events across the fleet per 15 minutes",
        "count",
        &[
            series(&ecc_trend, "time", "sbe", "single-bit (corrected)")?,
            series(&ecc_trend, "time", "dbe", "double-bit (uncorrectable)")?,
            series(&ecc_trend, "time", "retired_pages", "pages retired")?,
        ],
        &[
            RGBColor(116, 169, 207),
            RGBColor(215, 48, 39),
            RGBColor(84, 39, 143),
        ],
    )?;

    let span = time_span(&temperature);
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gpu-health fleet report</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1160px; color: #1b1f24; }}
h1 {{ font-size: 1.6rem; margin-bottom: .2rem; }}
.meta {{ color: #57606a; margin-top: 0; }}
figure.plot {{ margin: 1.5rem 0; border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem; }}
figure.plot figcaption {{ color: #57606a; font-size: .9rem; padding: .3rem .5rem; }}
.scroll {{ overflow-x: auto; margin: .5rem 0 1.5rem; }}
table {{ border-collapse: collapse; font-size: .85rem; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; white-space: nowrap; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #f6f8fa; }}
.empty {{ color: #57606a; font-style: italic; }}
</style></head><body>
<h1>GPU fleet report</h1>
<p class="meta">From the {store}, {span}. Generated {now} by gpu-health {version}.</p>
"#,
        store = store.describe(),
        span = escape(&span),
        now = Utc::now().format("%Y-%m-%d %H:%M UTC"),
        version = env!("CARGO_PKG_VERSION"),
    );
    let _ = write!(page, "<h2>Fleet status</h2>\n{}", html_table(&fleet));
    figure(
        &mut page,
        &temp_plot,
        "Mean and hottest GPU temperature per 15-minute bucket (gpu_metrics_15min).",
    );
    figure(
        &mut page,
        &grade_plot,
        "GPUs per health grade per UTC day (gpu_health_scores).",
    );
    figure(
        &mut page,
        &worst_plot,
        "Daily overall score of the GPUs with the lowest score on the newest day.",
    );
    let _ = write!(
        page,
        "<h2>Degrading GPUs</h2>\n<p class=\"meta\">Steepest score decline first (points per day over 30 days), with the 30-day failure probability.</p>\n{}",
        html_table(&degrading)
    );
    figure(
        &mut page,
        &ecc_plot,
        "ECC counter increases summed over the fleet per 15-minute bucket (boundary-safe deltas).",
    );
    let _ = write!(
        page,
        "<h2>ECC errors per GPU</h2>\n{}</body></html>\n",
        html_table(&ecc)
    );
    Ok(page)
}

fn figure(page: &mut String, svg: &str, caption: &str) {
    let _ = write!(
        page,
        "<figure class=\"plot\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>\n",
        escape(caption)
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table(t: &Table) -> String {
    if t.rows.is_empty() {
        return "<p class=\"empty\">No rows.</p>\n".into();
    }
    let mut s = String::from("<div class=\"scroll\"><table><thead><tr>");
    for c in &t.columns {
        let _ = write!(s, "<th>{}</th>", escape(c));
    }
    s.push_str("</tr></thead><tbody>\n");
    for row in &t.rows {
        s.push_str("<tr>");
        for cell in row {
            let class = if matches!(cell, Cell::Int(_) | Cell::Float(_)) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(s, "<td{class}>{}</td>", escape(&super::text(cell, true)));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table></div>\n");
    s
}

fn seconds(t: &DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

fn number(c: &Cell) -> Option<f64> {
    match c {
        Cell::Int(v) => Some(*v as f64),
        Cell::Float(v) if v.is_finite() => Some(*v),
        _ => None,
    }
}

/// One series from two columns: a time and a number (NULLs skipped).
fn series(t: &Table, x: &str, y: &str, name: &str) -> Result<Series> {
    let (xi, yi) = (t.column(x)?, t.column(y)?);
    let points = t
        .rows
        .iter()
        .filter_map(|r| match (&r[xi], number(&r[yi])) {
            (Cell::Time(at), Some(v)) => Some((seconds(at), v)),
            _ => None,
        })
        .collect();
    Ok(Series {
        name: name.to_owned(),
        points,
    })
}

/// One series per distinct value of `key`, in order of first appearance.
fn by_key(t: &Table, key: &str, x: &str, y: &str) -> Result<Vec<Series>> {
    let (ki, xi, yi) = (t.column(key)?, t.column(x)?, t.column(y)?);
    let mut out: Vec<Series> = Vec::new();
    for r in &t.rows {
        let (Cell::Text(k), Cell::Time(at), Some(v)) = (&r[ki], &r[xi], number(&r[yi])) else {
            continue;
        };
        match out.iter_mut().find(|s| &s.name == k) {
            Some(s) => s.points.push((seconds(at), v)),
            None => out.push(Series {
                name: k.clone(),
                points: vec![(seconds(at), v)],
            }),
        }
    }
    Ok(out)
}

/// GPUs per grade per day, one series per grade (0 on days a grade is absent), in
/// grade order with the grade colours.
fn by_grade(t: &Table) -> Result<(Vec<Series>, Vec<RGBColor>)> {
    let (di, gi, ni) = (t.column("day")?, t.column("grade")?, t.column("gpus")?);
    let mut days: Vec<f64> = t
        .rows
        .iter()
        .filter_map(|r| match &r[di] {
            Cell::Time(at) => Some(seconds(at)),
            _ => None,
        })
        .collect();
    days.sort_by(f64::total_cmp);
    days.dedup();
    let mut series = Vec::new();
    let mut colours = Vec::new();
    for (grade, colour) in GRADE_COLOURS {
        let points: Vec<(f64, f64)> = days
            .iter()
            .map(|&d| {
                let n = t
                    .rows
                    .iter()
                    .filter(|r| {
                        matches!(&r[di], Cell::Time(at) if seconds(at) == d)
                            && matches!(&r[gi], Cell::Text(g) if g == grade)
                    })
                    .filter_map(|r| number(&r[ni]))
                    .sum();
                (d, n)
            })
            .collect();
        if points.iter().any(|p| p.1 > 0.0) {
            series.push(Series {
                name: grade.to_owned(),
                points,
            });
            colours.push(colour);
        }
    }
    Ok((series, colours))
}

fn time_span(t: &Table) -> String {
    let Ok(i) = t.column("time") else {
        return "no data".into();
    };
    let times: Vec<&DateTime<Utc>> = t
        .rows
        .iter()
        .filter_map(|r| match &r[i] {
            Cell::Time(at) => Some(at),
            _ => None,
        })
        .collect();
    match (times.first(), times.last()) {
        (Some(a), Some(b)) => format!(
            "{} to {}",
            a.format("%Y-%m-%d %H:%M"),
            b.format("%Y-%m-%d %H:%M UTC")
        ),
        _ => "no data".into(),
    }
}

fn time_label(secs: &f64) -> String {
    DateTime::from_timestamp(*secs as i64, 0)
        .map(|t| t.format("%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// A line plot as an SVG element; `colours` falls back to plotters' palette.
fn line_plot(
    title: &str,
    y_label: &str,
    series: &[Series],
    colours: &[RGBColor],
) -> Result<String> {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Ok(format!(
            "<p class=\"empty\">{}: no data.</p>",
            escape(title)
        ));
    }
    if x1 - x0 < 1.0 {
        (x0, x1) = (x0 - 3600.0, x1 + 3600.0);
    }
    let pad = ((y1 - y0) * 0.08).max(1.0);
    let (y0, y1) = (
        if y0 >= 0.0 {
            (y0 - pad).max(0.0)
        } else {
            y0 - pad
        },
        y1 + pad,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&time_label)
            .y_desc(y_label)
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(plot_error)?;
        for (i, s) in series.iter().enumerate() {
            let colour = colours.get(i).copied().unwrap_or_else(|| {
                let c = Palette99::pick(i).to_backend_color();
                RGBColor(c.rgb.0, c.rgb.1, c.rgb.2)
            });
            let style = ShapeStyle::from(colour).stroke_width(2);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(plot_error)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + 18, y)],
                        ShapeStyle::from(colour).stroke_width(3),
                    )
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e:?}")
}
