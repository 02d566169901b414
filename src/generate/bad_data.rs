//! Bad-data injection: the kinds, a deterministic plan of where each lands (capped so no
//! GPU-day has more than 0.5% bad samples), and the text of the hard (unusable) messages.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::fleet::GpuInfo;
use super::scenario::Scenarios;
use super::shape::{self, Field, Ident, Sample, Spoil, TimeRepr};

/// Share of a GPU-day's samples that injection may touch.
const MAX_BAD_SHARE_PER_GPU_DAY: f64 = 0.005;
/// Share of all messages that injection aims at, for big fleets.
const TARGET_BAD_SHARE: f64 = 1e-4;
/// At least this many of each kind, where the caps allow.
const MIN_PER_KIND: usize = 5;
/// Messages over 1 MiB are expensive; at most this many.
const MAX_TOO_LARGE: usize = 2;
/// Padding that makes a `too_large` message exceed 1,048,576 bytes.
const TOO_LARGE_PADDING: usize = 1_100_000;

/// Every injected kind, named as in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotJson,
    NotObject,
    TooLarge,
    MissingGpuUuid,
    InvalidGpuUuid,
    MissingHostname,
    MissingTimestamp,
    InvalidTimestamp,
    TimestampTooOld,
    TimestampInFuture,
    WrongType,
    NotFinite,
    OutOfRange,
    Duplicate,
    OutOfOrder,
    Late,
    TooLate,
}

impl Kind {
    pub const ALL: [Kind; 17] = [
        Kind::NotJson,
        Kind::NotObject,
        Kind::TooLarge,
        Kind::MissingGpuUuid,
        Kind::InvalidGpuUuid,
        Kind::MissingHostname,
        Kind::MissingTimestamp,
        Kind::InvalidTimestamp,
        Kind::TimestampTooOld,
        Kind::TimestampInFuture,
        Kind::WrongType,
        Kind::NotFinite,
        Kind::OutOfRange,
        Kind::Duplicate,
        Kind::OutOfOrder,
        Kind::Late,
        Kind::TooLate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::NotJson => "not_json",
            Kind::NotObject => "not_object",
            Kind::TooLarge => "too_large",
            Kind::MissingGpuUuid => "missing_gpu_uuid",
            Kind::InvalidGpuUuid => "invalid_gpu_uuid",
            Kind::MissingHostname => "missing_hostname",
            Kind::MissingTimestamp => "missing_timestamp",
            Kind::InvalidTimestamp => "invalid_timestamp",
            Kind::TimestampTooOld => "timestamp_too_old",
            Kind::TimestampInFuture => "timestamp_in_future",
            Kind::WrongType => "wrong_type",
            Kind::NotFinite => "not_finite",
            Kind::OutOfRange => "out_of_range",
            Kind::Duplicate => "duplicate",
            Kind::OutOfOrder => "out_of_order",
            Kind::Late => "late",
            Kind::TooLate => "too_late",
        }
    }

    /// Extra messages that cannot be used at all (dead letters).
    pub fn is_hard(self) -> bool {
        matches!(
            self,
            Kind::NotJson
                | Kind::NotObject
                | Kind::TooLarge
                | Kind::MissingGpuUuid
                | Kind::InvalidGpuUuid
                | Kind::MissingHostname
                | Kind::MissingTimestamp
                | Kind::InvalidTimestamp
                | Kind::TimestampTooOld
                | Kind::TimestampInFuture
        )
    }

    /// Whether the injection counts against the GPU-day's bad-sample budget.
    fn counts_as_bad(self) -> bool {
        !matches!(self, Kind::Duplicate | Kind::OutOfOrder | Kind::Late)
            && !matches!(self, Kind::MissingGpuUuid | Kind::InvalidGpuUuid)
    }
}

/// What happens at an injection point.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// The real sample, with one field spoiled.
    Soft(Spoil),
    /// The real sample, then an exact copy `after` messages later (1..=3).
    Duplicate { after: u8 },
    /// The real sample, held back and emitted at the end of tick `release_tick`.
    Move { release_tick: u64 },
    /// An extra unusable message, half an interval after the tick.
    Hard { variant: u8 },
}

/// One planned injection.
#[derive(Debug, Clone, Copy)]
pub struct Injection {
    pub tick: u64,
    pub gpu: usize,
    pub kind: Kind,
    pub action: Action,
}

/// The run's shape, as the planner needs it.
pub struct PlanInput<'a> {
    pub gpus: usize,
    pub n_ticks: u64,
    pub interval_s: u32,
    pub scenarios: &'a Scenarios,
}

fn ticks(seconds: u64, interval_s: u32) -> u64 {
    seconds.div_ceil(u64::from(interval_s)).max(1)
}

/// Plans every injection, sorted by tick then GPU. Deterministic for a given `rng`.
pub fn plan(input: &PlanInput<'_>, rng: &mut ChaCha8Rng) -> Vec<Injection> {
    let PlanInput {
        gpus,
        n_ticks,
        interval_s,
        scenarios,
    } = *input;
    if gpus == 0 || n_ticks < 2 {
        return Vec::new();
    }
    let expected = gpus as f64 * n_ticks as f64;
    let per_kind =
        ((expected * TARGET_BAD_SHARE / Kind::ALL.len() as f64).ceil() as usize).max(MIN_PER_KIND);
    let ticks_per_day = (86_400 / u64::from(interval_s)).max(1);
    let cap = |day: u64| {
        let in_day = ticks_per_day.min(n_ticks - day * ticks_per_day);
        (in_day as f64 * MAX_BAD_SHARE_PER_GPU_DAY).floor() as u32
    };
    let mut bad_per_gpu_day: HashMap<(usize, u64), u32> = HashMap::new();
    let mut used: HashSet<(usize, u64)> = HashSet::new();
    let mut out = Vec::new();

    for kind in Kind::ALL {
        let count = if kind == Kind::TooLarge {
            per_kind.min(MAX_TOO_LARGE)
        } else {
            per_kind
        };
        let delay = match kind {
            Kind::OutOfOrder => Some((1, ticks(30, interval_s))),
            Kind::Late => Some((ticks(180, interval_s), ticks(300, interval_s))),
            Kind::TooLate => Some((ticks(7_200, interval_s), ticks(7_800, interval_s))),
            _ => None,
        };
        for _ in 0..count {
            for _attempt in 0..40 {
                let gpu = rng.random_range(0..gpus);
                let (tick, release) = match delay {
                    Some((lo, hi)) => {
                        let d = rng.random_range(lo..=hi);
                        if d + 1 < n_ticks {
                            let t = rng.random_range(0..n_ticks - d);
                            (t, t + d)
                        } else {
                            let t = rng.random_range(0..n_ticks - 1);
                            (t, n_ticks - 1)
                        }
                    }
                    None => {
                        let t = rng.random_range(0..n_ticks);
                        (t, t)
                    }
                };
                if scenarios.blocks(gpu, tick, release, kind == Kind::OutOfRange) {
                    continue;
                }
                if !kind.is_hard() && used.contains(&(gpu, tick)) {
                    continue;
                }
                let day = tick / ticks_per_day;
                if kind.counts_as_bad() {
                    let n = bad_per_gpu_day.entry((gpu, day)).or_insert(0);
                    if *n >= cap(day) {
                        continue;
                    }
                    *n += 1;
                }
                if !kind.is_hard() {
                    used.insert((gpu, tick));
                }
                let action = match kind {
                    Kind::WrongType => Action::Soft(Spoil::WrongType(pick(
                        rng,
                        &[
                            Field::GpuTemp,
                            Field::MemoryTemp,
                            Field::PowerUsage,
                            Field::SmClock,
                            Field::GpuUtilization,
                        ],
                    ))),
                    Kind::NotFinite => Action::Soft(Spoil::NotFinite(
                        pick(rng, &[Field::GpuTemp, Field::MemoryTemp, Field::PowerUsage]),
                        rng.random_bool(0.5),
                    )),
                    Kind::OutOfRange => Action::Soft(Spoil::OutOfRange(pick(
                        rng,
                        &[
                            Field::GpuTemp,
                            Field::PowerUsage,
                            Field::SmActive,
                            Field::EccSbeAggregate,
                        ],
                    ))),
                    Kind::Duplicate => Action::Duplicate {
                        after: rng.random_range(1..=3),
                    },
                    Kind::OutOfOrder | Kind::Late | Kind::TooLate => Action::Move {
                        release_tick: release,
                    },
                    _ => Action::Hard {
                        variant: rng.random_range(0..=u8::MAX),
                    },
                };
                out.push(Injection {
                    tick,
                    gpu,
                    kind,
                    action,
                });
                break;
            }
        }
    }
    out.sort_by_key(|x| (x.tick, x.gpu, x.kind.is_hard()));
    out
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn with_year(at: DateTime<Utc>, year: i32) -> DateTime<Utc> {
    at.with_year(year).unwrap_or_default()
}

/// Writes the text of a hard message of `kind` about `gpu` at time `at` into `out`, and
/// returns its message key (`None` where the message has no usable GPU UUID to key by).
pub fn render_hard(
    out: &mut String,
    kind: Kind,
    variant: u8,
    gpu: &GpuInfo,
    s: &Sample,
    at: DateTime<Utc>,
) -> Option<Vec<u8>> {
    let when = match kind {
        Kind::TimestampTooOld => with_year(at, 1999),
        Kind::TimestampInFuture => with_year(at, 2099),
        _ => at,
    };
    let text = when.to_rfc3339_opts(SecondsFormat::Millis, true);
    let time = match kind {
        Kind::MissingTimestamp => TimeRepr::Missing,
        Kind::InvalidTimestamp => TimeRepr::Text("yesterday"),
        _ => TimeRepr::Normal {
            text: &text,
            ms: when.timestamp_millis(),
        },
    };
    let mut ident = Ident::of(gpu);
    let mut key = Some(gpu.uuid.as_bytes().to_vec());
    match kind {
        Kind::MissingGpuUuid => {
            ident.uuid = None;
            key = None;
        }
        Kind::InvalidGpuUuid => {
            ident.uuid = Some("not-a-uuid");
            key = Some(b"not-a-uuid".to_vec());
        }
        Kind::MissingHostname => ident.hostname = false,
        _ => {}
    }
    match kind {
        Kind::NotObject => {
            out.push_str(["[1,2]", "42", "\"gpu-metrics\""][usize::from(variant) % 3]);
        }
        Kind::NotJson => {
            shape::render(out, gpu, s, time, Spoil::None, ident);
            let cut = out.len() * 2 / 3;
            out.truncate(cut);
        }
        Kind::TooLarge => {
            shape::render(out, gpu, s, time, Spoil::None, ident);
            out.pop();
            out.push_str(",\"debug_padding\":\"");
            out.extend(std::iter::repeat_n('x', TOO_LARGE_PADDING));
            out.push_str("\"}");
        }
        _ => shape::render(out, gpu, s, time, Spoil::None, ident),
    }
    key
}
