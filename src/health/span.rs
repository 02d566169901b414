//! Coverage of a GPU-day in seconds, independent of the sampling rate
//! (HEALTH_MODEL.md, "coverage").
//!
//! A sample covers the time after it up to the next sample, but at most twice the
//! GPU's interval, which is the median spacing of its samples that day. So 0.1 s,
//! 10 s and jittered sampling give the same coverage for the same presence, and a gap
//! costs what it lasts beyond two intervals.
//!
//! Memory is bounded whatever the rate: spacings go into a log-binned histogram (for
//! the median) and only the `TOP_GAPS` longest spacings are kept exactly (the only ones
//! that can exceed twice the median in practice). A sample older than the day's newest
//! (reordered input) does not split a gap: coverage errs low, never high.

use serde::{Deserialize, Serialize};

/// Spacings kept exactly: every spacing over twice the median must be among them for
/// the coverage to be exact; past that, the histogram's bins estimate the rest.
const TOP_GAPS: usize = 32;
/// Log bins of spacing from `MIN_SPACING_US` up, each `BIN_RATIO` wider than the last:
/// 1 ms to over 4 days in 192 bins, about 10 % resolution of the median.
const MIN_SPACING_US: f64 = 1_000.0;
const BIN_RATIO: f64 = 1.1;
const BINS: usize = 192;

/// One GPU-day's sample times, summarised.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpanAcc {
    first_us: Option<i64>,
    last_us: Option<i64>,
    /// Spacings between consecutive samples, by log bin (allocated on the 2nd sample).
    bins: Vec<u32>,
    spacings: u64,
    /// The longest spacings, descending.
    top: Vec<i64>,
}

/// Coverage of an expected span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Covered {
    /// The GPU's interval: the median spacing, or the fallback below two samples.
    pub interval_us: i64,
    /// Seconds of the span covered by samples.
    pub covered_s: f64,
    /// The longest stretch of the span not covered, seconds.
    pub longest_gap_s: f64,
    /// Seconds from the end of the last sample's cover to the span's end.
    pub quiet_tail_s: f64,
}

fn bin_of(spacing_us: i64) -> usize {
    let x = (spacing_us as f64 / MIN_SPACING_US).max(1.0);
    ((x.ln() / BIN_RATIO.ln()) as usize).min(BINS - 1)
}

/// Geometric middle of a bin, microseconds.
fn bin_mid(i: usize) -> f64 {
    MIN_SPACING_US * BIN_RATIO.powf(i as f64 + 0.5)
}

impl SpanAcc {
    pub fn samples_span(&self) -> Option<(i64, i64)> {
        Some((self.first_us?, self.last_us?))
    }

    /// Adds a sample time.
    pub fn push(&mut self, t: i64) {
        self.first_us = Some(self.first_us.map_or(t, |f| f.min(t)));
        let Some(last) = self.last_us else {
            self.last_us = Some(t);
            return;
        };
        if t <= last {
            return;
        }
        self.last_us = Some(t);
        let spacing = t - last;
        if self.bins.is_empty() {
            self.bins = vec![0; BINS];
        }
        self.bins[bin_of(spacing)] = self.bins[bin_of(spacing)].saturating_add(1);
        self.spacings += 1;
        if self.top.len() < TOP_GAPS || self.top.last().is_some_and(|m| spacing > *m) {
            let at = self.top.partition_point(|g| *g >= spacing);
            self.top.insert(at, spacing);
            self.top.truncate(TOP_GAPS);
        }
    }

    /// The median spacing, or `None` below two samples.
    pub fn median_spacing_us(&self) -> Option<i64> {
        if self.spacings == 0 {
            return None;
        }
        let rank = self.spacings.div_ceil(2);
        let mut seen = 0u64;
        for (i, c) in self.bins.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(bin_mid(i).round() as i64);
            }
        }
        None
    }

    /// Coverage of `[span_start, span_end)`. `prev_last_us` is the GPU's newest sample
    /// before this day (its cover reaches into the day); `fallback_interval_us` is used
    /// below two samples.
    pub fn covered(
        &self,
        span_start: i64,
        span_end: i64,
        prev_last_us: Option<i64>,
        fallback_interval_us: i64,
    ) -> Covered {
        let interval = self
            .median_spacing_us()
            .unwrap_or(fallback_interval_us)
            .max(1);
        let cover = 2 * interval;
        let span = (span_end - span_start).max(0);
        let prev_cover_end = prev_last_us.map_or(span_start, |p| (p + cover).max(span_start));
        let Some((first, last)) = self.samples_span() else {
            let covered = (prev_cover_end.min(span_end) - span_start).max(0);
            let gap = span - covered;
            return Covered {
                interval_us: interval,
                covered_s: covered as f64 / 1e6,
                longest_gap_s: gap as f64 / 1e6,
                quiet_tail_s: gap as f64 / 1e6,
            };
        };
        let first = first.clamp(span_start, span_end);
        let last = last.clamp(span_start, span_end);
        // Before the first sample: only the previous day's cover.
        let lead_covered = (prev_cover_end.min(first) - span_start).max(0);
        let lead_gap = (first - span_start) - lead_covered;
        // Between samples: every spacing counts up to `cover`.
        let excess: i64 =
            if self.top.len() < TOP_GAPS || self.top.last().is_some_and(|m| *m <= cover) {
                self.top.iter().map(|g| (g - cover).max(0)).sum()
            } else {
                // More long spacings than kept exactly: estimate from the bins.
                self.bins
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (bin_mid(i) - cover as f64).max(0.0) * f64::from(*c))
                    .sum::<f64>() as i64
            };
        let inner = ((last - first) - excess).max(0);
        let tail_covered = (span_end - last).min(cover).max(0);
        let tail_gap = (span_end - last) - tail_covered;
        let covered = (lead_covered + inner + tail_covered).min(span);
        let longest_inner = self.top.first().map_or(0, |g| (g - cover).max(0));
        Covered {
            interval_us: interval,
            covered_s: covered as f64 / 1e6,
            longest_gap_s: lead_gap.max(tail_gap).max(longest_inner) as f64 / 1e6,
            quiet_tail_s: tail_gap as f64 / 1e6,
        }
    }

    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        self.bins.capacity() * 4 + self.top.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000;

    /// Naive reference: walk the sorted times, each covering up to `cover` after it.
    fn naive(times: &[i64], start: i64, end: i64, cover: i64) -> f64 {
        let mut t = times.to_vec();
        t.sort();
        let mut covered = 0i64;
        for (i, x) in t.iter().enumerate() {
            let next = t.get(i + 1).copied().unwrap_or(end);
            let to = (x + cover).min(next).min(end);
            covered += (to - x.max(&start)).max(0);
        }
        covered as f64 / 1e6
    }

    #[test]
    fn the_same_presence_gives_the_same_coverage_at_any_rate() {
        // One hour present out of a two-hour span, sampled at 0.1 s, 1 s and 10 s.
        for step in [S / 10, S, 10 * S] {
            let mut acc = SpanAcc::default();
            let mut t = 0;
            while t < 3600 * S {
                acc.push(t);
                t += step;
            }
            let c = acc.covered(0, 7200 * S, None, 10 * S);
            // The last sample covers up to two intervals past it.
            // (up to the median's bin width, 10 %).
            let step_s = step as f64 / 1e6;
            let expected = 3600.0 + step_s;
            assert!(
                (c.covered_s - expected).abs() < 0.25 * step_s,
                "step {step}: {c:?}"
            );
            assert!((c.quiet_tail_s - (3600.0 - step_s)).abs() < 0.25 * step_s);
        }
    }

    #[test]
    fn a_joining_gpu_is_expected_from_its_first_sample() {
        // Joins at 22:00 and reports every 10 s to midnight: fully covered.
        let start = 22 * 3600 * S;
        let mut acc = SpanAcc::default();
        let mut t = start;
        while t < 24 * 3600 * S {
            acc.push(t);
            t += 10 * S;
        }
        let c = acc.covered(start, 24 * 3600 * S, None, 10 * S);
        assert_eq!(c.covered_s, 7200.0);
        assert_eq!(c.longest_gap_s, 0.0);
    }

    proptest! {
        /// Jittered sampling with gaps matches the naive walk (times in order).
        #[test]
        fn coverage_equals_a_naive_walk(
            steps in proptest::collection::vec((1i64..30, prop_oneof![9 => Just(0i64), 1 => 60i64..3600]), 2..150),
        ) {
            let mut acc = SpanAcc::default();
            let mut times = Vec::new();
            let mut t = 100 * S;
            for (jitter, gap) in &steps {
                t += 10 * S + (jitter - 15) * S / 10 + gap * S;
                times.push(t);
                acc.push(t);
            }
            let end = t + 600 * S;
            let c = acc.covered(0, end, None, 10 * S);
            let cover = 2 * c.interval_us;
            let expected = naive(&times, 0, end, cover);
            prop_assert!((c.covered_s - expected).abs() < 1e-6, "{} vs {}", c.covered_s, expected);
        }
    }

    #[test]
    fn the_median_is_within_a_bin() {
        let mut acc = SpanAcc::default();
        for i in 0..1000 {
            acc.push(i * 300_000);
        }
        let m = acc.median_spacing_us().unwrap() as f64;
        assert!((m / 300_000.0 - 1.0).abs() < 0.1, "{m}");
    }
}
