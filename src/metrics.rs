//! Operational metrics and the Prometheus scrape endpoint (DESIGN 7).
//!
//! One process-wide set, because every stage reports into it (the source's lag, the
//! engine's state, the sink's rows) and a scrape must see them together. Counters and
//! gauges are the `prometheus` crate's; latencies and batch sizes are hdrhistograms
//! exposed as Prometheus summaries, whose quantiles cover the last one to two
//! minutes (two histograms, rotated) while `_count` and `_sum` cover the whole run.
//! The endpoint (`/metrics`, and `/healthz` for probes) binds 127.0.0.1 unless the
//! pipeline's `[metrics] listen` says otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Metric, MetricFamily, MetricType, Quantile, Summary};
use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tracing::{debug, info};

/// Every name starts with this.
const PREFIX: &str = "gpu_health";

/// Quantiles of every summary.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// How long a quantile histogram collects before it is rotated out (quantiles cover
/// one to two of these).
const QUANTILE_WINDOW: Duration = Duration::from_secs(60);

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    /// Messages read, by source topic.
    pub events_in: IntCounterVec,
    /// Dead letters, by reason (DESIGN 2.2; `too_late` included).
    pub dead_letters: IntCounterVec,
    /// Late events: merged into an emitted window (`merged`) or too old (`too_late`).
    pub late_events: IntCounterVec,
    /// Rows in stored flushes, by table.
    pub rows_written: IntCounterVec,
    /// Single metrics stored as NULL, by reason (the row is kept).
    pub invalid_values: IntCounterVec,
    /// Duplicate samples dropped (the first one wins).
    pub duplicates: IntCounter,
    /// Messages behind the committed offset, per partition (from librdkafka's statistics).
    pub consumer_lag: IntGaugeVec,
    /// Open windows, by width.
    pub open_windows: IntGaugeVec,
    /// Approximate bytes of engine state (windows, counter samples, day accumulators).
    pub state_bytes: IntGauge,
    /// Wall clock minus the pipeline watermark, seconds: how stale the rollups are.
    pub watermark_delay: Gauge,
    /// Newest event time seen minus the pipeline watermark, seconds (allowed
    /// lateness plus the skew between partitions).
    pub watermark_behind_newest: Gauge,
    /// GPUs the engine holds state for.
    pub gpus: IntGauge,
    /// Times the source was paused because the sink was behind.
    pub source_pauses: IntCounter,
    /// Flush attempts that failed on a lost database connection and were retried.
    pub sink_retries: IntCounter,
    /// Aggregate refreshes and retention runs that failed (retried later).
    pub maintenance_failures: IntCounter,
    /// Output-topic flushes retried while the broker was unavailable.
    pub topic_retries: IntCounter,
    /// Kafka message timestamp to its flush committed, seconds.
    pub e2e_latency: QuantileSummary,
    /// Time to store one flush (output topics and sink), seconds.
    pub flush_latency: QuantileSummary,
    /// Messages per micro-batch.
    pub batch_messages: QuantileSummary,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

fn name(n: &str) -> String {
    format!("{PREFIX}_{n}")
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        // Names and label sets are constants of this file, so creation and registration
        // cannot fail but for a programming error, which the unit tests below catch.
        fn registered<M: Collector + Clone + 'static>(
            r: &Registry,
            metric: prometheus::Result<M>,
        ) -> M {
            let m = metric.expect("valid metric");
            r.register(Box::new(m.clone())).expect("unique metric");
            m
        }
        fn counters(r: &Registry, n: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            registered(r, IntCounterVec::new(Opts::new(name(n), help), labels))
        }
        fn gauges(r: &Registry, n: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
            registered(r, IntGaugeVec::new(Opts::new(name(n), help), labels))
        }
        fn counter(r: &Registry, n: &str, help: &str) -> IntCounter {
            registered(r, IntCounter::new(name(n), help))
        }
        fn gauge(r: &Registry, n: &str, help: &str) -> IntGauge {
            registered(r, IntGauge::new(name(n), help))
        }
        fn seconds(r: &Registry, n: &str, help: &str) -> Gauge {
            registered(r, Gauge::new(name(n), help))
        }
        let r = &registry;
        let info = gauges(
            r,
            "build_info",
            "The running version (always 1).",
            &["version"],
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
        let m = Metrics {
            events_in: counters(r, "events_in_total", "Messages read.", &["topic"]),
            dead_letters: counters(
                r,
                "dead_letters_total",
                "Messages dead-lettered.",
                &["reason"],
            ),
            late_events: counters(
                r,
                "late_events_total",
                "Events behind the watermark: merged into an emitted window, or too late.",
                &["outcome"],
            ),
            rows_written: counters(r, "rows_written_total", "Rows stored.", &["table"]),
            invalid_values: counters(
                r,
                "invalid_values_total",
                "Single metrics stored as NULL (row kept, validation_passed = false).",
                &["reason"],
            ),
            duplicates: counter(r, "duplicates_total", "Duplicate samples dropped."),
            consumer_lag: gauges(
                r,
                "consumer_lag",
                "Messages between a partition's high watermark and its committed offset.",
                &["topic", "partition"],
            ),
            open_windows: gauges(r, "open_windows", "Open windows.", &["width"]),
            state_bytes: gauge(r, "state_bytes", "Approximate bytes of engine state."),
            watermark_delay: seconds(
                r,
                "watermark_delay_seconds",
                "Wall clock minus the pipeline watermark.",
            ),
            watermark_behind_newest: seconds(
                r,
                "watermark_behind_newest_seconds",
                "Newest event time seen minus the pipeline watermark.",
            ),
            gpus: gauge(r, "gpus", "GPUs the engine holds state for."),
            source_pauses: counter(
                r,
                "source_pauses_total",
                "Times the source was paused because the sink was behind.",
            ),
            sink_retries: counter(
                r,
                "sink_retries_total",
                "Flush attempts retried after a lost database connection.",
            ),
            maintenance_failures: counter(
                r,
                "maintenance_failures_total",
                "Aggregate refreshes and retention runs that failed; retried later.",
            ),
            topic_retries: counter(
                r,
                "topic_retries_total",
                "Output-topic flushes retried while the broker was unavailable.",
            ),
            e2e_latency: QuantileSummary::register(
                r,
                "e2e_latency_seconds",
                "Kafka message timestamp to its flush committed.",
                1e-3,
            ),
            flush_latency: QuantileSummary::register(
                r,
                "flush_latency_seconds",
                "Time to store one flush.",
                1e-6,
            ),
            batch_messages: QuantileSummary::register(
                r,
                "batch_messages",
                "Messages per micro-batch.",
                1.0,
            ),
            registry,
        };
        for width in ["1m", "15m"] {
            m.open_windows.with_label_values(&[width]).set(0);
        }
        m
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Writing into a Vec fails only on a malformed family, which the registry refused.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// An hdrhistogram exposed as a Prometheus summary. Values are recorded as integers
/// in a unit (`scale` turns them into the exposed unit: 1e-3 for milliseconds to
/// seconds).
#[derive(Clone)]
pub struct QuantileSummary {
    inner: std::sync::Arc<SummaryInner>,
}

struct SummaryInner {
    desc: Desc,
    scale: f64,
    state: Mutex<Windowed>,
}

struct Windowed {
    current: hdrhistogram::Histogram<u64>,
    previous: hdrhistogram::Histogram<u64>,
    rotated: Instant,
    count: u64,
    sum: u64,
}

impl QuantileSummary {
    fn register(registry: &Registry, n: &str, help: &str, scale: f64) -> Self {
        // Three significant digits, auto-resizing: any value can be recorded.
        let hist = || hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits");
        let s = QuantileSummary {
            inner: std::sync::Arc::new(SummaryInner {
                desc: Desc::new(name(n), help.to_owned(), Vec::new(), HashMap::new())
                    .expect("valid metric"),
                scale,
                state: Mutex::new(Windowed {
                    current: hist(),
                    previous: hist(),
                    rotated: Instant::now(),
                    count: 0,
                    sum: 0,
                }),
            }),
        };
        registry
            .register(Box::new(s.clone()))
            .expect("unique metric");
        s
    }

    /// Records values (in the summary's recording unit).
    pub fn record(&self, values: impl IntoIterator<Item = u64>) {
        let Ok(mut w) = self.inner.state.lock() else {
            return;
        };
        w.rotate(Instant::now());
        for v in values {
            // Auto-resizing: `record` grows the range (`saturating_record` would clamp).
            if w.current.record(v).is_err() {
                w.current.saturating_record(v);
            }
            w.count += 1;
            w.sum = w.sum.saturating_add(v);
        }
    }

    /// Count, sum and quantiles, in the exposed unit.
    pub fn snapshot(&self) -> (u64, f64, Vec<(f64, f64)>) {
        let Ok(mut w) = self.inner.state.lock() else {
            return (0, 0.0, Vec::new());
        };
        w.rotate(Instant::now());
        let mut recent = w.current.clone();
        // Same bounds and precision, so the merge cannot fail.
        let _ = recent.add(&w.previous);
        let quantiles = if recent.is_empty() {
            Vec::new()
        } else {
            QUANTILES
                .iter()
                .map(|&q| (q, recent.value_at_quantile(q) as f64 * self.inner.scale))
                .collect()
        };
        (w.count, w.sum as f64 * self.inner.scale, quantiles)
    }
}

impl Windowed {
    fn rotate(&mut self, now: Instant) {
        let age = now.duration_since(self.rotated);
        if age < QUANTILE_WINDOW {
            return;
        }
        if age >= 2 * QUANTILE_WINDOW {
            self.previous.reset();
        } else {
            std::mem::swap(&mut self.previous, &mut self.current);
        }
        self.current.reset();
        self.rotated = now;
    }
}

impl Collector for QuantileSummary {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.inner.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (count, sum, quantiles) = self.snapshot();
        let mut summary = Summary::default();
        summary.set_sample_count(count);
        summary.set_sample_sum(sum);
        summary.set_quantile(
            quantiles
                .into_iter()
                .map(|(q, v)| {
                    let mut quantile = Quantile::default();
                    quantile.set_quantile(q);
                    quantile.set_value(v);
                    quantile
                })
                .collect(),
        );
        let mut metric = Metric::default();
        metric.set_summary(summary);
        let mut family = MetricFamily::default();
        family.set_name(self.inner.desc.fq_name.clone());
        family.set_help(self.inner.desc.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(vec![metric]);
        vec![family]
    }
}

/// Binds the scrape endpoint and serves it in the background; returns the bound
/// address (port 0 picks a free one).
pub async fn serve(listen: &str) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics.listen: cannot bind {listen:?}"))?;
    let addr = listener.local_addr().context("metrics endpoint address")?;
    info!(%addr, "metrics endpoint: http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    debug!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let service = hyper::service::service_fn(respond);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    debug!(error = %e, "metrics endpoint: connection failed");
                }
            });
        }
    });
    Ok(addr)
}

async fn respond(
    req: Request<hyper::body::Incoming>,
) -> std::result::Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics().render(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new();
        m.events_in.with_label_values(&["t"]).inc_by(3);
        m.e2e_latency.record([250, 750]);
        let text = m.render();
        assert!(
            text.contains("gpu_health_events_in_total{topic=\"t\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE gpu_health_e2e_latency_seconds summary"),
            "{text}"
        );
        assert!(
            text.contains("gpu_health_e2e_latency_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("gpu_health_e2e_latency_seconds_sum 1"),
            "{text}"
        );
        assert!(
            text.contains("gpu_health_open_windows{width=\"15m\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn quantiles_follow_a_naive_sort() {
        let m = Metrics::new();
        // 1..=1000 ms: the naive q-quantile is the ceil(q * n)-th smallest value.
        m.flush_latency.record((1..=1000u64).map(|ms| ms * 1000));
        let (count, sum, qs) = m.flush_latency.snapshot();
        assert_eq!(count, 1000);
        assert!((sum - 500.5).abs() < 1e-9, "{sum}");
        for (q, v) in qs {
            let naive = (q * 1000.0).ceil() / 1000.0;
            // Three significant digits.
            assert!(
                (v - naive).abs() <= naive * 1e-3 + 1e-9,
                "q{q}: {v} vs {naive}"
            );
        }
    }

    #[test]
    fn quantiles_forget_what_is_two_windows_old() {
        let mut w = Windowed {
            current: hdrhistogram::Histogram::new(3).unwrap(),
            previous: hdrhistogram::Histogram::new(3).unwrap(),
            rotated: Instant::now(),
            count: 0,
            sum: 0,
        };
        w.current.record(5).unwrap();
        let t0 = w.rotated;
        w.rotate(t0 + QUANTILE_WINDOW);
        assert_eq!((w.previous.len(), w.current.len()), (1, 0));
        w.rotate(t0 + 3 * QUANTILE_WINDOW);
        assert_eq!((w.previous.len(), w.current.len()), (0, 0));
    }
}
