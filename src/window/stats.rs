//! Mergeable rollup state: count, mean, M2 (for the sample standard deviation), min,
//! max per metric, and event counts. Merging follows Chan et al.'s parallel variance
//! update, so a 15-minute bucket is exactly the merge of its 1-minute partials and a
//! late event merges into a bucket without the bucket's raw samples.

/// Running statistics of one metric over non-NULL values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricStats {
    pub n: u64,
    pub mean: f64,
    pub m2: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for MetricStats {
    fn default() -> Self {
        MetricStats {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl MetricStats {
    /// A partial from its aggregates (`var_pop` is the population variance).
    pub fn from_partial(n: u64, mean: f64, var_pop: f64, min: f64, max: f64) -> Self {
        if n == 0 {
            return Self::default();
        }
        MetricStats {
            n,
            mean,
            m2: (var_pop * n as f64).max(0.0),
            min,
            max,
        }
    }

    #[cfg(test)]
    pub fn push(&mut self, x: f64) {
        self.merge(&MetricStats {
            n: 1,
            mean: x,
            m2: 0.0,
            min: x,
            max: x,
        });
    }

    pub fn merge(&mut self, o: &MetricStats) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let n = self.n + o.n;
        let delta = o.mean - self.mean;
        let (na, nb, nf) = (self.n as f64, o.n as f64, n as f64);
        self.mean += delta * nb / nf;
        self.m2 += o.m2 + delta * delta * na * nb / nf;
        self.n = n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    pub fn avg(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean)
    }
    pub fn min(&self) -> Option<f64> {
        (self.n > 0).then_some(self.min)
    }
    pub fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(self.max)
    }
    /// Sample standard deviation, NULL below two values: PostgreSQL's `stddev()`.
    pub fn stddev(&self) -> Option<f64> {
        (self.n >= 2).then(|| (self.m2 / (self.n - 1) as f64).max(0.0).sqrt())
    }
}

/// Event counts of a bucket (all mergeable by addition / max).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventCounts {
    pub samples: u64,
    pub invalid: u64,
    pub throttle: u64,
    pub thermal: u64,
    pub power: u64,
    pub power_cap: u64,
    pub dbe_volatile_max: Option<i64>,
}

impl EventCounts {
    pub fn merge(&mut self, o: &EventCounts) {
        self.samples += o.samples;
        self.invalid += o.invalid;
        self.throttle += o.throttle;
        self.thermal += o.thermal;
        self.power += o.power;
        self.power_cap += o.power_cap;
        self.dbe_volatile_max = match (self.dbe_volatile_max, o.dbe_volatile_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(xs: &[f64]) -> (f64, f64, f64, Option<f64>) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let sd = (xs.len() >= 2)
            .then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (mean, min, max, sd)
    }

    proptest! {
        /// Any split of a sequence, merged in any grouping, equals the naive statistics.
        #[test]
        fn merge_of_partials_equals_naive(xs in proptest::collection::vec(-1000.0f64..1000.0, 1..60), cuts in proptest::collection::vec(0usize..60, 0..5)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % xs.len()).collect();
            cuts.push(0);
            cuts.push(xs.len());
            cuts.sort();
            let mut total = MetricStats::default();
            for w in cuts.windows(2) {
                let mut part = MetricStats::default();
                for &x in &xs[w[0]..w[1]] {
                    part.push(x);
                }
                total.merge(&part);
            }
            let (mean, min, max, sd) = naive(&xs);
            prop_assert!((total.avg().unwrap() - mean).abs() < 1e-9 * (1.0 + mean.abs()));
            prop_assert_eq!(total.min().unwrap(), min);
            prop_assert_eq!(total.max().unwrap(), max);
            match (total.stddev(), sd) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-7 * (1.0 + b)),
                (None, None) => {}
                other => prop_assert!(false, "stddev mismatch {:?}", other),
            }
        }

        #[test]
        fn from_partial_round_trips(xs in proptest::collection::vec(-50.0f64..50.0, 1..30)) {
            let (mean, min, max, _) = naive(&xs);
            let var_pop = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            let p = MetricStats::from_partial(xs.len() as u64, mean, var_pop, min, max);
            let mut q = MetricStats::default();
            xs.iter().for_each(|x| q.push(*x));
            prop_assert!((p.m2 - q.m2).abs() < 1e-7 * (1.0 + q.m2));
        }
    }

    #[test]
    fn stddev_is_null_below_two_values() {
        let mut s = MetricStats::default();
        assert_eq!(s.stddev(), None);
        s.push(3.0);
        assert_eq!(s.stddev(), None);
        s.push(5.0);
        assert!((s.stddev().unwrap() - 2f64.sqrt()).abs() < 1e-12);
    }
}
