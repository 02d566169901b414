//! Boundary-safe counter deltas for the ECC `*_aggregate` counters and retired pages.
//!
//! The delta of a bucket is the sum of the sample-to-sample increases of the samples
//! inside it, each measured from the previous non-NULL value, which may lie in an
//! earlier bucket (the carry). A decrease means the counter was reset (driver reload):
//! the new value counts as the increase. For a GPU's very first value the increase is
//! 0, so its first bucket gives last minus first. Deltas of consecutive buckets add up
//! to the counter's total increase. (The seed's per-bucket `MAX - MIN` loses the
//! increments that fall between buckets.)
//!
//! A track keeps the samples of buckets that may still be re-emitted (late data), in
//! time order, plus the last value before them.

use serde::{Deserialize, Serialize};

use crate::event::schema::{ECC_DBE_AGG, ECC_SBE_AGG, RETIRED_PAGES};

/// The counters with deltas, as metric indexes: SBE, DBE, retired pages.
pub const COUNTERS: [usize; 3] = [ECC_SBE_AGG, ECC_DBE_AGG, RETIRED_PAGES];
pub const N_COUNTERS: usize = COUNTERS.len();

pub type CounterValues = [Option<i64>; N_COUNTERS];

/// Increase from `prev` to `v` under the reset rule.
pub fn step(prev: Option<i64>, v: i64) -> i64 {
    match prev {
        None => 0,
        Some(p) if v >= p => v - p,
        Some(_) => v,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct CounterSample {
    t: i64,
    v: CounterValues,
}

/// One GPU's retained counter samples (also its de-duplication index).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CounterTrack {
    samples: Vec<CounterSample>,
    carry: CounterValues,
}

impl CounterTrack {
    /// Inserts a sample; returns false (and changes nothing) when `t` is present.
    pub fn insert(&mut self, t: i64, v: CounterValues) -> bool {
        // Samples mostly arrive in order: check the end before searching.
        if self.samples.last().is_none_or(|l| l.t < t) {
            self.samples.push(CounterSample { t, v });
            return true;
        }
        match self.samples.binary_search_by_key(&t, |s| s.t) {
            Ok(_) => false,
            Err(i) => {
                self.samples.insert(i, CounterSample { t, v });
                true
            }
        }
    }

    /// Deltas over `[from, to)`; `None` for a counter with no value in the range.
    pub fn delta(&self, from: i64, to: i64) -> CounterValues {
        let start = self.samples.partition_point(|s| s.t < from);
        let mut out = [None; N_COUNTERS];
        for (c, slot) in out.iter_mut().enumerate() {
            let mut prev = self.samples[..start]
                .iter()
                .rev()
                .find_map(|s| s.v[c])
                .or(self.carry[c]);
            let mut sum: Option<i64> = None;
            for s in self.samples[start..].iter().take_while(|s| s.t < to) {
                if let Some(v) = s.v[c] {
                    sum = Some(sum.unwrap_or(0) + step(prev, v));
                    prev = Some(v);
                }
            }
            *slot = sum;
        }
        out
    }

    /// Forgets samples before `t`, folding their last values into the carry.
    pub fn prune_before(&mut self, t: i64) {
        let cut = self.samples.partition_point(|s| s.t < t);
        if cut == 0 {
            return;
        }
        for s in &self.samples[..cut] {
            for c in 0..N_COUNTERS {
                if s.v[c].is_some() {
                    self.carry[c] = s.v[c];
                }
            }
        }
        self.samples.drain(..cut);
    }

    pub fn retained(&self) -> usize {
        self.samples.len()
    }

    pub fn bytes(&self) -> usize {
        self.samples.capacity() * std::mem::size_of::<CounterSample>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Naive reference: total increase of a time-ordered sequence under the reset rule.
    fn naive_total(values: &[Option<i64>]) -> Option<i64> {
        let mut prev = None;
        let mut total = None;
        for v in values.iter().flatten() {
            total = Some(total.unwrap_or(0) + step(prev, *v));
            prev = Some(*v);
        }
        total
    }

    fn series() -> impl Strategy<Value = Vec<(i64, Option<i64>)>> {
        proptest::collection::vec((1i64..40, proptest::option::weighted(0.8, 0i64..50)), 1..80)
            .prop_map(|steps| {
                let mut t = 0;
                let mut level = 100;
                steps
                    .into_iter()
                    .map(|(dt, inc)| {
                        t += dt * 1_000_000;
                        // Mostly growing, sometimes reset to a small value.
                        let v = inc.map(|i| {
                            if i == 49 {
                                level = i % 7;
                            } else {
                                level += i % 5;
                            }
                            level
                        });
                        (t, v)
                    })
                    .collect()
            })
    }

    proptest! {
        /// Deltas of consecutive buckets add up to the total increase, whatever the
        /// arrival order, and pruning (with its carry) changes no later delta.
        #[test]
        fn bucket_deltas_add_up_to_total_increase(s in series(), width in 1i64..200, shuffle in any::<u64>()) {
            let width = width * 1_000_000;
            let mut track = CounterTrack::default();
            let mut order: Vec<usize> = (0..s.len()).collect();
            // Deterministic shuffle: arrival order must not matter.
            let mut x = shuffle | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for i in order {
                let (t, v) = s[i];
                prop_assert!(track.insert(t, [v, None, v]));
            }
            prop_assert!(!track.insert(s[0].0, [Some(1), None, None]));
            let last = s.last().unwrap().0;
            let mut sum: Option<i64> = None;
            let mut b = 0;
            let mut pruned = track.clone();
            while b <= last {
                let d = track.delta(b, b + width);
                let dp = pruned.delta(b, b + width);
                prop_assert_eq!(d, dp);
                if let Some(x) = d[0] { sum = Some(sum.unwrap_or(0) + x); }
                prop_assert_eq!(d[1], None);
                pruned.prune_before(b + width);
                b += width;
            }
            let values: Vec<Option<i64>> = s.iter().map(|x| x.1).collect();
            prop_assert_eq!(sum, naive_total(&values));
        }
    }

    #[test]
    fn reset_counts_the_new_value() {
        let mut t = CounterTrack::default();
        for (i, v) in [500, 502, 3, 4].into_iter().enumerate() {
            t.insert(i as i64 * 10, [Some(v), None, None]);
        }
        // 500 -> 502 (+2), reset to 3 (+3), 3 -> 4 (+1).
        assert_eq!(t.delta(0, 100)[0], Some(6));
        assert_eq!(t.delta(15, 100)[0], Some(4));
        // First bucket of a GPU: last minus first.
        assert_eq!(t.delta(0, 15)[0], Some(2));
    }
}
