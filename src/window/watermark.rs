//! Event-time watermarks (DESIGN 3): per partition, the highest event time seen minus
//! `allowed_lateness`; the pipeline's watermark is the minimum over partitions that
//! are not idle (no data for `idle_timeout` of wall time). When every partition is
//! idle (the fleet went quiet), it advances by processing time up to the newest event
//! seen plus the idle timeout, as Flink's `withIdleness` and Arroyo's idle watermarks
//! do: the last windows close and their rollups go out, while data that comes back
//! later is not judged against a clock that ran on. A partition the source has
//! been assigned holds the watermark back from the moment it is expected, before its
//! first event: a consumer may fetch one partition far ahead of another, and the
//! other's events must not arrive too late for that. It never moves backwards, except
//! when a partition is taken over from a checkpoint whose watermark is behind.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How far event time has got: every window ending at or before an `At` time may
/// close. Ordered: `Before` < every `At` < `Closed`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Watermark {
    /// Before the first event (or while an expected partition has none yet): nothing
    /// closes.
    #[default]
    Before,
    /// Microseconds since the epoch.
    At(i64),
    /// A bounded input has ended: everything closes.
    Closed,
}

/// The bounds that `Before` and `Closed` stand for in window arithmetic, far enough
/// from the ends of `i64` that adding a day or a horizon cannot overflow.
const BEFORE_US: i64 = i64::MIN / 4;
const CLOSED_US: i64 = i64::MAX / 4;

impl Watermark {
    /// The time, when it is one.
    pub fn time_us(self) -> Option<i64> {
        match self {
            Watermark::At(t) => Some(t),
            _ => None,
        }
    }

    /// For the window arithmetic of this module tree only: `Before` and `Closed` as
    /// times before and after every event.
    pub(in crate::window) fn bound_us(self) -> i64 {
        match self {
            Watermark::Before => BEFORE_US,
            Watermark::At(t) => t,
            Watermark::Closed => CLOSED_US,
        }
    }

    pub(in crate::window) fn from_bound(us: i64) -> Self {
        if us <= BEFORE_US {
            Watermark::Before
        } else if us >= CLOSED_US {
            Watermark::Closed
        } else {
            Watermark::At(us)
        }
    }
}

impl std::fmt::Display for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Watermark::Before => f.write_str("before the first event"),
            Watermark::At(t) => match chrono::DateTime::from_timestamp_micros(*t) {
                Some(d) => write!(
                    f,
                    "{}",
                    d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None => write!(f, "{t} µs"),
            },
            Watermark::Closed => f.write_str("closed (end of input)"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    max_event_us: i64,
    last_seen: Instant,
}

/// Watermark tracking for all partitions of one pipeline.
#[derive(Debug, Clone)]
pub struct Watermarks {
    allowed_lateness_us: i64,
    /// `None`: partitions are never idle (a file, read one partition after another).
    idle_timeout: Option<Duration>,
    partitions: HashMap<i32, PartitionClock>,
    current: i64,
}

/// A partition's clock before its first event.
const NO_EVENT: i64 = BEFORE_US;

impl Watermarks {
    pub fn new(allowed_lateness_us: i64, idle_timeout: Option<Duration>) -> Self {
        Watermarks {
            allowed_lateness_us,
            idle_timeout,
            partitions: HashMap::new(),
            current: NO_EVENT,
        }
    }

    pub fn observe(&mut self, partition: i32, event_us: i64, now: Instant) {
        let clock = self.partitions.entry(partition).or_insert(PartitionClock {
            max_event_us: event_us,
            last_seen: now,
        });
        clock.max_event_us = clock.max_event_us.max(event_us);
        clock.last_seen = now;
    }

    /// A partition the source reads: until it has data (or goes idle) the watermark
    /// cannot pass the start of time.
    pub fn expect(&mut self, partition: i32, now: Instant) {
        self.partitions.entry(partition).or_insert(PartitionClock {
            max_event_us: NO_EVENT,
            last_seen: now,
        });
    }

    /// Recomputes the watermark at wall time `now` and returns it.
    pub fn advance(&mut self, now: Instant) -> Watermark {
        Watermark::from_bound(self.advance_us(now))
    }

    fn advance_us(&mut self, now: Instant) -> i64 {
        let idle = self.idle_timeout;
        let active = self
            .partitions
            .values()
            .filter(|c| idle.is_none_or(|t| now.duration_since(c.last_seen) < t))
            .map(|c| c.max_event_us)
            .min();
        let candidate = match (active, idle) {
            (Some(m), _) => m - self.allowed_lateness_us,
            // Every partition idle: the stream is quiet. Processing time has run
            // `idle` at least since the newest event came, so event time may too.
            (None, Some(idle)) => match self.partitions.values().map(|c| c.max_event_us).max() {
                Some(m) if m > NO_EVENT => m + idle.as_micros() as i64,
                _ => return self.current,
            },
            (None, None) => return self.current,
        };
        self.current = self.current.max(candidate);
        self.current
    }

    /// One partition's own watermark: its highest event time minus the lateness.
    pub fn of_partition(&self, partition: i32) -> Option<Watermark> {
        self.partitions
            .get(&partition)
            .filter(|c| c.max_event_us > NO_EVENT)
            .map(|c| Watermark::At(c.max_event_us - self.allowed_lateness_us))
    }

    /// A partition's highest event time, for a checkpoint (None before its first event).
    pub fn max_event_of(&self, partition: i32) -> Option<i64> {
        self.partitions
            .get(&partition)
            .map(|c| c.max_event_us)
            .filter(|&m| m > NO_EVENT)
    }

    /// Takes over partitions from checkpoints: their clocks, and `watermark`, the
    /// lowest pipeline watermark among the checkpoints. A tracker that knew no
    /// partition yet (a restart) starts at it. One that has partitions of its own (a
    /// member taking partitions over) goes back to it if it is behind: the one place the
    /// watermark moves back, because the pipeline's watermark is the minimum over its
    /// partitions, and the lagging partitions' windows, counter samples and days must
    /// not be closed or pruned before their data is in. Returns whether it was fresh.
    pub fn restore(
        &mut self,
        clocks: &[(i32, Option<i64>)],
        watermark: Watermark,
        now: Instant,
    ) -> bool {
        let watermark = watermark.bound_us();
        // Fresh: every partition known is one being restored. A partition read without
        // a checkpoint (from its start) may hold data far behind the checkpoints'.
        let fresh = self
            .partitions
            .keys()
            .all(|p| clocks.iter().any(|(q, _)| q == p));
        for &(partition, max_event_us) in clocks {
            let clock = self.partitions.entry(partition).or_insert(PartitionClock {
                max_event_us: NO_EVENT,
                last_seen: now,
            });
            if let Some(m) = max_event_us {
                clock.max_event_us = clock.max_event_us.max(m);
            }
            clock.last_seen = now;
        }
        self.current = if fresh {
            watermark
        } else {
            self.current.min(watermark)
        };
        fresh
    }

    /// The pipeline did not read for `stalled` (waiting for its sink): that time does
    /// not count towards any partition's idleness. Without this, every partition but
    /// the first to deliver after a database outage would count as idle, and the
    /// watermark would run ahead of their data.
    pub fn discount_stall(&mut self, stalled: Duration, now: Instant) {
        for c in self.partitions.values_mut() {
            c.last_seen = (c.last_seen + stalled).min(now);
        }
    }

    /// A partition that went to another instance no longer holds the watermark back.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    pub fn current(&self) -> Watermark {
        Watermark::from_bound(self.current)
    }

    /// The end of a bounded input: everything may close.
    pub fn close_all(&mut self) -> Watermark {
        self.current = CLOSED_US;
        Watermark::Closed
    }

    /// Event-time delay of the watermark behind the newest event seen (while the
    /// watermark is a time).
    pub fn delay_us(&self) -> Option<i64> {
        let newest = self.partitions.values().map(|c| c.max_event_us).max()?;
        let current = self.current().time_us()?;
        (newest > NO_EVENT).then(|| newest - current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_active_partitions_minus_lateness() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(60, Some(Duration::from_secs(30)));
        w.observe(0, 1000, t0);
        w.observe(1, 500, t0);
        assert_eq!(w.advance(t0), Watermark::At(440));
        // Partition 1 goes idle: only partition 0 holds the watermark back.
        w.observe(0, 2000, t0 + Duration::from_secs(31));
        assert_eq!(w.advance(t0 + Duration::from_secs(31)), Watermark::At(1940));
        // Never backwards, even when the slow partition wakes up.
        w.observe(1, 600, t0 + Duration::from_secs(32));
        assert_eq!(w.advance(t0 + Duration::from_secs(32)), Watermark::At(1940));
    }

    #[test]
    fn a_stalled_pipeline_does_not_make_partitions_idle() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(60, Some(Duration::from_secs(30)));
        w.observe(0, 1000, t0);
        w.observe(1, 500, t0);
        assert_eq!(w.advance(t0), Watermark::At(440));
        // 40 s waiting for the sink, then partition 0 delivers first.
        let t1 = t0 + Duration::from_secs(40);
        w.discount_stall(Duration::from_secs(40), t1);
        w.observe(0, 3000, t1);
        assert_eq!(
            w.advance(t1),
            Watermark::At(440),
            "partition 1 still holds the watermark"
        );
        // Without the discount, partition 1 would have counted as idle.
        let mut v = Watermarks::new(60, Some(Duration::from_secs(30)));
        v.observe(0, 1000, t0);
        v.observe(1, 500, t0);
        v.observe(0, 3000, t1);
        assert_eq!(v.advance(t1), Watermark::At(2940));
    }

    #[test]
    fn an_expected_partition_holds_the_watermark_until_its_data_comes() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(60, Some(Duration::from_secs(30)));
        w.expect(0, t0);
        w.expect(1, t0);
        w.observe(0, 5000, t0);
        assert_eq!(w.advance(t0), Watermark::Before);
        w.observe(1, 1000, t0 + Duration::from_secs(1));
        assert_eq!(w.advance(t0 + Duration::from_secs(1)), Watermark::At(940));
        // Expecting a partition again changes nothing.
        w.expect(1, t0 + Duration::from_secs(2));
        assert_eq!(w.advance(t0 + Duration::from_secs(2)), Watermark::At(940));
        // An expected partition that never delivers goes idle like any other.
        let mut w = Watermarks::new(60, Some(Duration::from_secs(30)));
        w.expect(3, t0);
        w.observe(0, 5000, t0 + Duration::from_secs(31));
        assert_eq!(w.advance(t0 + Duration::from_secs(31)), Watermark::At(4940));
    }

    #[test]
    fn a_partition_read_from_its_start_keeps_a_restored_watermark_back() {
        let t0 = Instant::now();
        // A restart: every partition comes from a checkpoint.
        let mut w = Watermarks::new(60, Some(Duration::from_secs(30)));
        assert!(w.restore(&[(0, Some(5000)), (1, Some(4000))], Watermark::At(3940), t0));
        assert_eq!(w.current(), Watermark::At(3940));
        // A member that was handed partitions 2 and 3 without checkpoints (read from
        // their start, nothing fetched yet) and then 0 and 1 with them.
        let mut w = Watermarks::new(60, Some(Duration::from_secs(30)));
        w.expect(2, t0);
        w.expect(3, t0);
        assert!(!w.restore(&[(0, Some(5000)), (1, Some(4000))], Watermark::At(3940), t0));
        assert_eq!(w.current(), Watermark::Before);
        w.observe(2, 1000, t0);
        w.observe(3, 1200, t0);
        assert_eq!(
            w.advance(t0),
            Watermark::At(940),
            "the oldest partition decides"
        );
    }
}
