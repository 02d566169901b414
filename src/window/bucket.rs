//! Bucket arithmetic: `[t0, t0 + width)` aligned to the Unix epoch in UTC, exactly
//! what TimescaleDB's `time_bucket(width, time)` gives for these widths.

/// Microseconds per second.
pub const SECOND_US: i64 = 1_000_000;
/// Microseconds per minute.
pub const MINUTE_US: i64 = 60 * SECOND_US;
/// Microseconds per UTC day.
pub const DAY_US: i64 = 86_400 * SECOND_US;

/// The rollup widths we emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Width {
    OneMinute,
    FifteenMinutes,
}

impl Width {
    pub fn micros(self) -> i64 {
        match self {
            Width::OneMinute => MINUTE_US,
            Width::FifteenMinutes => 15 * MINUTE_US,
        }
    }
}

/// Start of the bucket holding `t` (floor division, correct before 1970 too).
pub fn bucket_start(t_us: i64, width_us: i64) -> i64 {
    t_us.div_euclid(width_us) * width_us
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bucket_contains_its_time_and_is_aligned(t in -10_000_000_000_000i64..10_000_000_000_000_000, w in prop_oneof![Just(MINUTE_US), Just(15 * MINUTE_US), Just(DAY_US)]) {
            let b = bucket_start(t, w);
            prop_assert!(b <= t && t < b + w);
            prop_assert_eq!(b % w, 0);
            // 1-minute buckets nest inside 15-minute and day buckets.
            prop_assert_eq!(bucket_start(bucket_start(t, MINUTE_US), w), b);
        }
    }

    #[test]
    fn matches_time_bucket_examples() {
        // time_bucket('15 minutes', '2026-02-11 10:44:59.999999+00') = 10:30.
        let t = 1_770_805_800_000_000 + 14 * MINUTE_US + 59_999_999;
        assert_eq!(bucket_start(t, 15 * MINUTE_US), 1_770_805_800_000_000);
        assert_eq!(bucket_start(-1, MINUTE_US), -MINUTE_US);
    }
}
