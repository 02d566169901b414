//! What happened inside the job, logged and counted in one place. Each happening is a
//! type (`DeadLettered`, `DuplicatesDropped`, `SinkRetried`, ...); `Events::emit` hands
//! it the run's tally, and its `emit` logs it, adds it to the tally (which the run's
//! `RunReport` is made from) and to the process's Prometheus metrics. Nothing else
//! touches the metrics, so the report and a scrape can never disagree on a count.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{debug, warn};

use crate::metrics::metrics;

/// The counts of one run (the run's `RunReport` reads them).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Messages read.
    pub messages: u64,
    /// Rows for the raw table (duplicates dropped; too-late rows kept).
    pub raw_rows: u64,
    /// Raw rows with a metric stored as NULL (`validation_passed = false`).
    pub invalid_rows: u64,
    pub duplicates: u64,
    pub too_late: u64,
    /// Rows that landed in an emitted window, which went out again.
    pub late_updates: u64,
    /// Rows that landed behind the watermark, within the late horizon.
    pub late_events: u64,
    pub dead_letters: BTreeMap<&'static str, u64>,
    /// Metrics stored as NULL, by reason.
    pub soft_errors: BTreeMap<&'static str, u64>,
    /// Final rollup rows and GPU-days scored.
    pub rollup_1m_rows: u64,
    pub rollup_15m_rows: u64,
    pub score_rows: u64,
    /// Rows of `gpu_failure_predictions` (scored days only).
    pub prediction_rows: u64,
    /// Score rows by grade, over the whole run.
    pub grades: BTreeMap<&'static str, u64>,
    /// Partition checkpoints stored with the data, and loaded from it.
    pub checkpoints_written: u64,
    pub partitions_restored: u64,
    /// Messages the output topics acknowledged (rollup rows and dead letters).
    pub topic_messages: u64,
    /// Times the source was paused because the sink was behind.
    pub pauses: u64,
    /// Flush or maintenance attempts retried after a retriable database error.
    pub sink_retries: u64,
    /// Aggregate refreshes and retention runs that failed (each retried later).
    pub maintenance_failures: u64,
    /// Output-topic flushes retried while the broker was unavailable.
    pub topic_retries: u64,
    pub peak_state_bytes: usize,
}

/// Something that happened: logs itself and counts itself.
pub trait InternalEvent {
    fn emit(self, tally: &mut Tally);
}

/// The run's event sink; cheap to clone into the sink task and the source.
#[derive(Clone, Default)]
pub struct Events {
    tally: Arc<Mutex<Tally>>,
}

impl Events {
    pub fn new() -> Self {
        Events::default()
    }

    pub fn emit(&self, event: impl InternalEvent) {
        event.emit(&mut self.lock());
    }

    /// The counts so far.
    pub fn tally(&self) -> Tally {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A micro-batch of messages read from the source.
pub struct BatchReceived<'a> {
    /// Messages per source topic.
    pub by_topic: &'a BTreeMap<&'a str, u64>,
}

impl InternalEvent for BatchReceived<'_> {
    fn emit(self, t: &mut Tally) {
        let m = metrics();
        let total: u64 = self.by_topic.values().sum();
        t.messages += total;
        m.batch_messages.record([total]);
        for (topic, n) in self.by_topic {
            m.events_in.with_label_values(&[topic]).inc_by(*n);
        }
    }
}

/// Messages that cannot be used, set aside with a reason (DESIGN 2.2).
pub struct DeadLettered {
    pub reason: &'static str,
    pub count: u64,
}

impl InternalEvent for DeadLettered {
    fn emit(self, t: &mut Tally) {
        *t.dead_letters.entry(self.reason).or_default() += self.count;
        metrics()
            .dead_letters
            .with_label_values(&[self.reason])
            .inc_by(self.count);
        debug!(reason = self.reason, count = self.count, "dead-lettered");
    }
}

/// Samples whose `(time, gpu_uuid)` was seen already: the first one won.
pub struct DuplicatesDropped {
    pub count: u64,
}

impl InternalEvent for DuplicatesDropped {
    fn emit(self, t: &mut Tally) {
        t.duplicates += self.count;
        metrics().duplicates.inc_by(self.count);
    }
}

/// Raw rows whose `(time, gpu_uuid)` the table held already (a replay of stored
/// input, or a duplicate too old for the engine's state to recognise): the stored row
/// won, so they count as duplicates, not as raw rows.
pub struct AlreadyStored {
    pub count: u64,
}

impl InternalEvent for AlreadyStored {
    fn emit(self, t: &mut Tally) {
        t.raw_rows = t.raw_rows.saturating_sub(self.count);
        t.duplicates += self.count;
        metrics().duplicates.inc_by(self.count);
        debug!(count = self.count, "raw rows already stored");
    }
}

/// Samples beyond the late horizon: stored raw, no rollup changed (also dead-lettered).
pub struct TooLate {
    pub count: u64,
}

impl InternalEvent for TooLate {
    fn emit(self, t: &mut Tally) {
        t.too_late += self.count;
        metrics()
            .late_events
            .with_label_values(&["too_late"])
            .inc_by(self.count);
    }
}

/// Late samples within the horizon: `behind_watermark` landed in a closed minute,
/// `rows_reemitted` in an emitted window that goes out again.
pub struct LateMerged {
    pub behind_watermark: u64,
    pub rows_reemitted: u64,
}

impl InternalEvent for LateMerged {
    fn emit(self, t: &mut Tally) {
        t.late_events += self.behind_watermark;
        t.late_updates += self.rows_reemitted;
        metrics()
            .late_events
            .with_label_values(&["merged"])
            .inc_by(self.behind_watermark);
        if self.rows_reemitted > 0 {
            debug!(
                rows = self.rows_reemitted,
                "late rows merged into emitted windows"
            );
        }
    }
}

/// Single metrics stored as NULL for `reason`; their rows are kept.
pub struct SoftInvalid {
    pub reason: &'static str,
    pub count: u64,
}

impl InternalEvent for SoftInvalid {
    fn emit(self, t: &mut Tally) {
        *t.soft_errors.entry(self.reason).or_default() += self.count;
        metrics()
            .invalid_values
            .with_label_values(&[self.reason])
            .inc_by(self.count);
    }
}

/// Raw rows of a batch admitted to the raw table (`invalid`: with a NULLed metric).
pub struct RowsAdmitted {
    pub rows: u64,
    pub invalid: u64,
}

impl InternalEvent for RowsAdmitted {
    fn emit(self, t: &mut Tally) {
        t.raw_rows += self.rows;
        t.invalid_rows += self.invalid;
    }
}

/// Rows the stages produced for one flush: final rollups and closed GPU-days.
pub struct RowsEmitted {
    pub rollup_1m: u64,
    pub rollup_15m: u64,
    pub scores: u64,
    pub predictions: u64,
    /// The grade of each score row.
    pub grades: Vec<&'static str>,
}

impl InternalEvent for RowsEmitted {
    fn emit(self, t: &mut Tally) {
        t.rollup_1m_rows += self.rollup_1m;
        t.rollup_15m_rows += self.rollup_15m;
        t.score_rows += self.scores;
        t.prediction_rows += self.predictions;
        for g in self.grades {
            *t.grades.entry(g).or_default() += 1;
        }
    }
}

/// The source was paused because the sink was behind.
pub struct SourcePaused;

impl InternalEvent for SourcePaused {
    fn emit(self, t: &mut Tally) {
        t.pauses += 1;
        metrics().source_pauses.inc();
    }
}

/// A flush or a maintenance run failed on something outside the job and waits
/// `backoff` before it is tried again.
/// An aggregate refresh or a retention run failed after its flush was stored: the
/// data is safe, the work is retried later.
pub struct MaintenanceFailed<'a> {
    pub what: &'static str,
    pub error: &'a str,
    pub retry_in: Duration,
}

impl InternalEvent for MaintenanceFailed<'_> {
    fn emit(self, t: &mut Tally) {
        t.maintenance_failures += 1;
        metrics().maintenance_failures.inc();
        warn!(
            what = self.what,
            error = self.error,
            retry_in_s = self.retry_in.as_secs(),
            "database maintenance failed; the data is stored, retrying later"
        );
    }
}

/// The output topics could not take a flush (broker unavailable): input paused,
/// retrying.
pub struct TopicRetried<'a> {
    pub error: &'a str,
    pub backoff: Duration,
}

impl InternalEvent for TopicRetried<'_> {
    fn emit(self, t: &mut Tally) {
        t.topic_retries += 1;
        metrics().topic_retries.inc();
        warn!(
            error = self.error,
            backoff_ms = self.backoff.as_millis() as u64,
            "output topics unavailable; input paused, retrying"
        );
    }
}

pub struct SinkRetried<'a> {
    pub error: &'a str,
    pub backoff: Duration,
}

impl InternalEvent for SinkRetried<'_> {
    fn emit(self, t: &mut Tally) {
        t.sink_retries += 1;
        metrics().sink_retries.inc();
        warn!(
            error = self.error,
            backoff_ms = self.backoff.as_millis() as u64,
            "database unavailable; input paused, retrying"
        );
    }
}

/// A flush is stored: its rows per table, how long storing took, and how long each of
/// its messages waited since its Kafka timestamp (ms).
pub struct FlushStored<'a> {
    pub rows: &'a [(&'static str, u64)],
    pub took: Duration,
    pub waited_ms: &'a [u64],
}

impl InternalEvent for FlushStored<'_> {
    fn emit(self, _: &mut Tally) {
        let m = metrics();
        m.flush_latency.record([self.took.as_micros() as u64]);
        for (table, n) in self.rows {
            m.rows_written.with_label_values(&[table]).inc_by(*n);
        }
        m.e2e_latency.record(self.waited_ms.iter().copied());
    }
}

/// Messages the output topics acknowledged.
pub struct TopicMessagesProduced {
    pub count: u64,
}

impl InternalEvent for TopicMessagesProduced {
    fn emit(self, t: &mut Tally) {
        t.topic_messages += self.count;
    }
}

/// Partition checkpoints taken (stored with the next flush).
pub struct CheckpointsTaken {
    pub count: u64,
}

impl InternalEvent for CheckpointsTaken {
    fn emit(self, t: &mut Tally) {
        t.checkpoints_written += self.count;
    }
}

/// Partitions whose engine state was loaded from their checkpoints.
pub struct PartitionsRestored {
    pub count: u64,
}

impl InternalEvent for PartitionsRestored {
    fn emit(self, t: &mut Tally) {
        t.partitions_restored += self.count;
        if self.count > 0 {
            tracing::info!(
                partitions = self.count,
                "engine state restored from checkpoints"
            );
        }
    }
}

/// The engine's state after a step.
pub struct EngineState {
    pub state_bytes: usize,
    pub gpus: usize,
    pub open_1m: usize,
    pub open_15m: usize,
    /// Wall clock minus the watermark (none before the first event or after the end).
    pub watermark_delay: Option<Duration>,
    /// Newest event seen minus the watermark, seconds.
    pub behind_newest_s: Option<f64>,
}

impl InternalEvent for EngineState {
    fn emit(self, t: &mut Tally) {
        t.peak_state_bytes = t.peak_state_bytes.max(self.state_bytes);
        let m = metrics();
        m.state_bytes.set(self.state_bytes as i64);
        m.gpus.set(self.gpus as i64);
        m.open_windows
            .with_label_values(&["1m"])
            .set(self.open_1m as i64);
        m.open_windows
            .with_label_values(&["15m"])
            .set(self.open_15m as i64);
        if let Some(s) = self.behind_newest_s {
            m.watermark_behind_newest.set(s);
        }
        if let Some(d) = self.watermark_delay {
            m.watermark_delay.set(d.as_secs_f64());
        }
    }
}

/// A partition's consumer lag from librdkafka's statistics (`None`: no longer
/// assigned here, the series goes).
pub struct ConsumerLag<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub lag: Option<i64>,
}

impl InternalEvent for ConsumerLag<'_> {
    fn emit(self, _: &mut Tally) {
        let gauge = &metrics().consumer_lag;
        let partition = self.partition.to_string();
        let labels = [self.topic, partition.as_str()];
        match self.lag {
            Some(n) => gauge.with_label_values(&labels).set(n),
            None => {
                let _ = gauge.remove_label_values(&labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_emit_counts_in_the_tally_and_in_prometheus() {
        let events = Events::new();
        let reason = "internal_events_test";
        let before = metrics().dead_letters.with_label_values(&[reason]).get();
        events.emit(DeadLettered { reason, count: 3 });
        events.emit(DeadLettered { reason, count: 2 });
        assert_eq!(events.tally().dead_letters[reason], 5);
        let after = metrics().dead_letters.with_label_values(&[reason]).get();
        assert_eq!(after - before, 5);
        // A second run has a tally of its own.
        assert!(Events::new().tally().dead_letters.is_empty());
    }
}
