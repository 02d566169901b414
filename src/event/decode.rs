//! Decoding one message value into a validated sample, or a dead-letter reason.
//!
//! Both input shapes (nested collector event, flat row) are read in one pass by a
//! serde visitor that writes each leaf into its column slot, so an unknown field costs
//! nothing and a wrong-typed metric never fails the message: it becomes a soft error
//! (NULL + reason). Only a message that cannot be placed at all (no GPU, host or time)
//! is a hard error.

use ahash::AHashMap as HashMap;
use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::dead_letter::DeadReason;
use super::schema::{IDENTITY, Kind, METRICS, N_METRICS};

/// A soft validation failure: a metric (or a whole section's metrics) stored as NULL,
/// or a text field cleaned so that the database will store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SoftReason {
    /// A metric that is not a number, or a section that is not an object.
    WrongType,
    NotFinite,
    OutOfRange,
    /// NUL or other control characters removed from a text field.
    ControlChars,
    /// A text field cut to its cap (`MAX_TEXT_BYTES`).
    TooLong,
    /// Lone surrogate escapes or bytes that are not UTF-8, replaced with U+FFFD.
    InvalidUnicode,
}

impl SoftReason {
    pub const ALL: [SoftReason; 6] = [
        SoftReason::WrongType,
        SoftReason::NotFinite,
        SoftReason::OutOfRange,
        SoftReason::ControlChars,
        SoftReason::TooLong,
        SoftReason::InvalidUnicode,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SoftReason::WrongType => "wrong_type",
            SoftReason::NotFinite => "not_finite",
            SoftReason::OutOfRange => "out_of_range",
            SoftReason::ControlChars => "control_chars",
            SoftReason::TooLong => "too_long",
            SoftReason::InvalidUnicode => "invalid_unicode",
        }
    }

    /// Position in `ALL` (for per-reason counters).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a soft error is about: a metric, an identity text field, a section, or the
/// message's text as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Metric(usize),
    Text(usize),
    Section(usize),
    Message,
}

impl Field {
    /// The name in `validation_errors`: the column, the section or `message`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Metric(i) => METRICS[i].name,
            // The identity slots follow `IDENTITY` after its `time`.
            Field::Text(i) => IDENTITY[i + 1],
            Field::Section(i) => SECTIONS.get(i).copied().unwrap_or("metrics"),
            Field::Message => "message",
        }
    }
}

/// Cap of an identity text field in bytes (`rack_id`, `gpu_model`, ...): longer values
/// are cut at a character boundary. 256 bytes holds any real identifier (a host name
/// is at most 253, RFC 1123) and keeps one hostile message from bloating every row.
pub const MAX_TEXT_BYTES: usize = 256;

/// Limits that decide hard errors.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_message_bytes: usize,
    /// Events later than `now + max_future_skew` are rejected.
    pub max_future_skew_us: i64,
    /// Wall clock in microseconds since the epoch, sampled once per batch.
    pub now_us: i64,
}

/// 2000-01-01T00:00:00Z in microseconds: older timestamps are rejected (DESIGN 2.2).
pub const MIN_TIME_US: i64 = 946_684_800_000_000;

/// A decoded, validated sample, borrowing strings from the message where it can.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSample<'a> {
    pub time_us: i64,
    pub gpu_uuid: Cow<'a, str>,
    pub hostname: Cow<'a, str>,
    pub pci_bus_id: Option<Cow<'a, str>>,
    pub device_index: Option<i32>,
    pub gpu_model: Option<Cow<'a, str>>,
    pub rack_id: Option<Cow<'a, str>>,
    pub cluster_id: Option<Cow<'a, str>>,
    pub datacenter: Option<Cow<'a, str>>,
    /// Metric values in `METRICS` order, already in column units; NULL as `None`.
    pub values: [Option<f64>; N_METRICS],
    /// Soft errors: what, and why.
    pub errors: Vec<(Field, SoftReason)>,
}

impl RawSample<'_> {
    /// The same sample owning its strings (after a decode from a repaired copy).
    fn into_owned(self) -> RawSample<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        RawSample {
            time_us: self.time_us,
            gpu_uuid: own(self.gpu_uuid),
            hostname: own(self.hostname),
            pci_bus_id: self.pci_bus_id.map(own),
            device_index: self.device_index,
            gpu_model: self.gpu_model.map(own),
            rack_id: self.rack_id.map(own),
            cluster_id: self.cluster_id.map(own),
            datacenter: self.datacenter.map(own),
            values: self.values,
            errors: self.errors,
        }
    }
}

/// The outcome of decoding one message.
#[derive(Debug)]
pub enum Decoded<'a> {
    Sample(Box<RawSample<'a>>),
    Dead(DeadReason, String),
}

/// Decodes and validates one message value.
pub fn decode<'a>(value: &'a [u8], limits: &DecodeLimits) -> Decoded<'a> {
    if value.len() > limits.max_message_bytes {
        return Decoded::Dead(
            DeadReason::TooLarge,
            format!(
                "{} bytes exceeds max_message_bytes {}",
                value.len(),
                limits.max_message_bytes
            ),
        );
    }
    // A byte-order mark is not JSON, but some writers put one first: skip it.
    let value = value.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(value);
    match parse(value) {
        Ok(env) => build_sample(env, limits),
        Err(err) => match repair_text(value) {
            // Text that is not Unicode (lone surrogate escapes, bytes that are not
            // UTF-8): decode a repaired copy, and say so on the row.
            Some(fixed) => match parse(&fixed) {
                Ok(env) => match build_sample(env, limits) {
                    Decoded::Sample(mut s) => {
                        s.errors.push((Field::Message, SoftReason::InvalidUnicode));
                        Decoded::Sample(Box::new(s.into_owned()))
                    }
                    Decoded::Dead(r, d) => Decoded::Dead(r, d),
                },
                Err(_) => classify_parse_error(value, err),
            },
            None => classify_parse_error(value, err),
        },
    }
}

fn parse(value: &[u8]) -> Result<Envelope<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(value);
    EnvelopeSeed
        .deserialize(&mut de)
        .and_then(|e| de.end().map(|_| e))
}

/// A copy of `value` with every byte sequence that is not UTF-8 and every lone
/// surrogate escape (`\ud800` without its pair) replaced by U+FFFD; `None` when there
/// is nothing to repair.
fn repair_text(value: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(value);
    let mut changed = matches!(text, Cow::Owned(_));
    let mut out = text.into_owned().into_bytes();
    let hex = |b: &[u8]| -> Option<u16> {
        let s = std::str::from_utf8(b).ok()?;
        u16::from_str_radix(s, 16).ok()
    };
    let (mut i, mut in_string) = (0, false);
    while i < out.len() {
        match out[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if out.get(i + 1) == Some(&b'u')
                    && let Some(unit) = out.get(i + 2..i + 6).and_then(hex)
                {
                    let paired = (0xD800..0xDC00).contains(&unit)
                        && out.get(i + 6..i + 8) == Some(&b"\\u"[..])
                        && out
                            .get(i + 8..i + 12)
                            .and_then(hex)
                            .is_some_and(|low| (0xDC00..0xE000).contains(&low));
                    if paired {
                        i += 12;
                        continue;
                    }
                    if (0xD800..0xE000).contains(&unit) {
                        out[i + 2..i + 6].copy_from_slice(b"FFFD");
                        changed = true;
                    }
                    i += 6;
                    continue;
                }
                // Any other escape: skip the escaped character.
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    changed.then_some(out)
}

/// A parse failure of the fast path: say precisely why, using a slow generic parse.
fn classify_parse_error<'a>(value: &[u8], err: serde_json::Error) -> Decoded<'a> {
    match serde_json::from_slice::<serde_json::Value>(value) {
        Err(e) => Decoded::Dead(DeadReason::NotJson, e.to_string()),
        Ok(v) if !v.is_object() => Decoded::Dead(
            DeadReason::NotObject,
            format!("top-level JSON value is {}", json_kind(&v)),
        ),
        Ok(_) => Decoded::Dead(DeadReason::Malformed, err.to_string()),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn build_sample<'a>(mut env: Envelope<'a>, limits: &DecodeLimits) -> Decoded<'a> {
    let mut errors = std::mem::take(&mut env.errors);
    // The identities are cleaned of control characters like every text field; one
    // that is still not a valid identity after that is a dead letter (never cut).
    let gpu_uuid = match text(env.ids[ID_GPU_UUID].take()) {
        TextField::Missing => return dead(DeadReason::MissingGpuUuid, "no gpu_uuid"),
        TextField::Invalid(d) => return dead(DeadReason::InvalidGpuUuid, d),
        TextField::Ok(s) => match clean_identity(s, valid_gpu_uuid) {
            Ok((s, cleaned)) => {
                if cleaned {
                    errors.push((Field::Text(ID_GPU_UUID), SoftReason::ControlChars));
                }
                s
            }
            Err(s) => {
                return dead(
                    DeadReason::InvalidGpuUuid,
                    format!("{:?} is not a GPU or MIG UUID", truncate(&s)),
                );
            }
        },
    };
    let hostname = match text(env.ids[ID_HOSTNAME].take()) {
        TextField::Missing => return dead(DeadReason::MissingHostname, "no hostname"),
        TextField::Invalid(d) => return dead(DeadReason::InvalidHostname, d),
        TextField::Ok(s) => match clean_identity(s, valid_hostname) {
            Ok((s, cleaned)) => {
                if cleaned {
                    errors.push((Field::Text(ID_HOSTNAME), SoftReason::ControlChars));
                }
                s
            }
            Err(s) => {
                return dead(
                    DeadReason::InvalidHostname,
                    format!("{:?} is not a hostname", truncate(&s)),
                );
            }
        },
    };
    let time_us = match env.time.as_ref() {
        None | Some(Leaf::Null) => {
            return dead(DeadReason::MissingTimestamp, "no timestamp or time field");
        }
        Some(leaf) => match parse_time(leaf) {
            Ok(t) => t,
            Err(d) => return dead(DeadReason::InvalidTimestamp, d),
        },
    };
    if time_us < MIN_TIME_US {
        return dead(
            DeadReason::TimestampTooOld,
            format!("{} is before 2000-01-01", fmt_time(time_us)),
        );
    }
    if time_us > limits.now_us.saturating_add(limits.max_future_skew_us) {
        return dead(
            DeadReason::TimestampInFuture,
            format!(
                "{} is more than {} s ahead of the wall clock",
                fmt_time(time_us),
                limits.max_future_skew_us / 1_000_000
            ),
        );
    }

    let mut values = [None; N_METRICS];
    for (i, leaf) in env.metrics.iter().enumerate() {
        let Some(leaf) = leaf else { continue };
        match metric_value(i, leaf, env.nested_metric[i]) {
            Ok(v) => values[i] = v,
            Err(reason) => errors.push((Field::Metric(i), reason)),
        }
    }
    let device_index = match env.ids[ID_DEVICE_INDEX].as_ref().map(number) {
        Some(Ok(Some(v))) if (0.0..=1024.0).contains(&v) && v.fract() == 0.0 => Some(v as i32),
        _ => None,
    };
    let mut opt = |i: usize| match text(env.ids[i].take()) {
        TextField::Ok(s) => {
            let (s, why) = clean_text(s);
            if let Some(why) = why {
                errors.push((Field::Text(i), why));
            }
            (!s.is_empty()).then_some(s)
        }
        TextField::Invalid(_) => {
            errors.push((Field::Text(i), SoftReason::WrongType));
            None
        }
        TextField::Missing => None,
    };
    let pci_bus_id = opt(ID_PCI_BUS_ID);
    let gpu_model = opt(ID_MODEL);
    let rack_id = opt(ID_RACK);
    let cluster_id = opt(ID_CLUSTER);
    let datacenter = opt(ID_DATACENTER);
    Decoded::Sample(Box::new(RawSample {
        time_us,
        gpu_uuid,
        hostname,
        pci_bus_id,
        device_index,
        gpu_model,
        rack_id,
        cluster_id,
        datacenter,
        values,
        errors,
    }))
}

/// A text field as the database will store it: control characters (NUL among them,
/// which PostgreSQL refuses in text) removed, then cut to `MAX_TEXT_BYTES` at a
/// character boundary; says why when it changed (the first reason).
fn clean_text(s: Cow<'_, str>) -> (Cow<'_, str>, Option<SoftReason>) {
    let mut why = None;
    let mut s = if s.chars().any(char::is_control) {
        why = Some(SoftReason::ControlChars);
        Cow::Owned(s.chars().filter(|c| !c.is_control()).collect())
    } else {
        s
    };
    if s.len() > MAX_TEXT_BYTES {
        why.get_or_insert(SoftReason::TooLong);
        let mut end = MAX_TEXT_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.to_mut().truncate(end);
    }
    (s, why)
}

/// An identity cleaned of control characters and checked: `Ok((value, cleaned))`, or
/// the value as received when it is still not valid.
fn clean_identity<'a>(
    s: Cow<'a, str>,
    valid: fn(&str) -> bool,
) -> Result<(Cow<'a, str>, bool), Cow<'a, str>> {
    if valid(&s) {
        return Ok((s, false));
    }
    let cleaned: String = s.chars().filter(|c| !c.is_control()).collect();
    if cleaned.len() != s.len() && valid(&cleaned) {
        Ok((Cow::Owned(cleaned), true))
    } else {
        Err(s)
    }
}

fn dead<'a>(reason: DeadReason, detail: impl Into<String>) -> Decoded<'a> {
    Decoded::Dead(reason, detail.into())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `GPU-` or `MIG-` followed by hex digits and dashes (nvidia-smi's UUID form).
fn valid_gpu_uuid(s: &str) -> bool {
    let rest = s.strip_prefix("GPU-").or_else(|| s.strip_prefix("MIG-"));
    match rest {
        Some(r) => {
            (8..=60).contains(&r.len())
                && r.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'/')
        }
        None => false,
    }
}

/// RFC 1123 host names: letters, digits, '-', '.', '_' up to 253 bytes.
fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Converts a metric leaf to its column value, or says why it is unusable.
fn metric_value(i: usize, leaf: &Leaf, nested: bool) -> Result<Option<f64>, SoftReason> {
    let col = &METRICS[i];
    let v = if col.kind == Kind::Bool {
        match leaf {
            Leaf::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            other => number(other)?,
        }
    } else {
        number(leaf)?
    };
    let Some(mut v) = v else { return Ok(None) };
    if nested {
        v *= col.nested_scale;
    }
    if v < col.min || v > col.max {
        return Err(SoftReason::OutOfRange);
    }
    if col.kind != Kind::Float && v.fract() != 0.0 {
        return Err(SoftReason::WrongType);
    }
    Ok(Some(v))
}

/// A JSON leaf as a finite number; NULL stays NULL.
fn number(leaf: &Leaf) -> Result<Option<f64>, SoftReason> {
    match leaf {
        Leaf::Null => Ok(None),
        Leaf::I(v) => Ok(Some(*v as f64)),
        Leaf::U(v) => Ok(Some(*v as f64)),
        Leaf::F(v) if v.is_finite() => Ok(Some(*v)),
        Leaf::F(_) => Err(SoftReason::NotFinite),
        Leaf::S(s) => {
            let t = s.trim().trim_start_matches(['+', '-']).to_ascii_lowercase();
            if t == "nan" || t == "inf" || t == "infinity" {
                Err(SoftReason::NotFinite)
            } else {
                Err(SoftReason::WrongType)
            }
        }
        Leaf::Bool(_) | Leaf::Composite => Err(SoftReason::WrongType),
    }
}

enum TextField<'a> {
    Missing,
    Invalid(String),
    Ok(Cow<'a, str>),
}

fn text(leaf: Option<Leaf<'_>>) -> TextField<'_> {
    match leaf {
        None | Some(Leaf::Null) => TextField::Missing,
        Some(Leaf::S(s)) if s.is_empty() => TextField::Missing,
        Some(Leaf::S(s)) => TextField::Ok(s),
        Some(_) => TextField::Invalid("expected a string".into()),
    }
}

/// Parses RFC 3339 text (with an offset) or integer epoch milliseconds.
fn parse_time(leaf: &Leaf) -> Result<i64, String> {
    match leaf {
        Leaf::I(ms) => ms
            .checked_mul(1000)
            .ok_or_else(|| format!("epoch milliseconds {ms} out of range")),
        Leaf::U(ms) => i64::try_from(*ms)
            .ok()
            .and_then(|m| m.checked_mul(1000))
            .ok_or_else(|| format!("epoch milliseconds {ms} out of range")),
        Leaf::F(f) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(*f as i64 * 1000),
        Leaf::S(s) => parse_rfc3339(s)
            .ok_or_else(|| format!("{:?} is not RFC 3339 with an offset", truncate(s))),
        _ => Err("expected RFC 3339 text or integer epoch milliseconds".into()),
    }
}

/// RFC 3339 to epoch microseconds: a fast path for `YYYY-MM-DDTHH:MM:SS[.f]Z`,
/// chrono for everything else (offsets, odd forms).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    fast_rfc3339_utc(s.as_bytes()).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_micros())
    })
}

fn fast_rfc3339_utc(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || *b.last()? != b'Z' {
        return None;
    }
    let d = |i: usize| -> Option<i64> {
        let c = *b.get(i)?;
        c.is_ascii_digit().then(|| (c - b'0') as i64)
    };
    let num = |from: usize, len: usize| -> Option<i64> {
        (from..from + len).try_fold(0i64, |acc, i| Some(acc * 10 + d(i)?))
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut micros = 0i64;
    let rest = &b[19..b.len() - 1];
    if !rest.is_empty() {
        if rest[0] != b'.' || rest.len() < 2 || rest.len() > 10 {
            return None;
        }
        let mut scale = 100_000i64;
        for &c in &rest[1..] {
            if !c.is_ascii_digit() {
                return None;
            }
            micros += (c - b'0') as i64 * scale;
            scale /= 10;
        }
    }
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?;
    let days = date
        .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
        .num_days();
    Some(((days * 86_400 + hour * 3600 + min * 60 + sec) * 1_000_000) + micros)
}

/// Formats epoch microseconds as RFC 3339 UTC (for messages and reports).
pub fn fmt_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{us} us"))
}

// ---- the one-pass visitor -------------------------------------------------------

/// A JSON leaf, borrowed where serde_json allows.
#[derive(Debug, Clone, PartialEq)]
enum Leaf<'a> {
    Null,
    Bool(bool),
    I(i64),
    U(u64),
    F(f64),
    S(Cow<'a, str>),
    Composite,
}

impl<'de> de::Deserialize<'de> for Leaf<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LeafVisitor)
    }
}

struct LeafVisitor;

impl<'de> Visitor<'de> for LeafVisitor {
    type Value = Leaf<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Null)
    }
    fn visit_none<E>(self) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Leaf<'de>, E> {
        Ok(Leaf::I(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Leaf<'de>, E> {
        Ok(Leaf::U(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Leaf<'de>, E> {
        Ok(Leaf::F(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::S(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::S(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Leaf<'de>, E> {
        Ok(Leaf::S(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leaf<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Leaf::Composite)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Leaf<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Leaf::Composite)
    }
}

/// A map key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

const ID_GPU_UUID: usize = 0;
const ID_HOSTNAME: usize = 1;
const ID_PCI_BUS_ID: usize = 2;
const ID_DEVICE_INDEX: usize = 3;
const ID_MODEL: usize = 4;
const ID_RACK: usize = 5;
const ID_CLUSTER: usize = 6;
const ID_DATACENTER: usize = 7;
const N_IDS: usize = 8;
/// Everything the visitor found, in slots.
struct Envelope<'a> {
    time: Option<Leaf<'a>>,
    ids: [Option<Leaf<'a>>; N_IDS],
    metrics: [Option<Leaf<'a>>; N_METRICS],
    /// Whether each metric came from the nested shape (units differ).
    nested_metric: [bool; N_METRICS],
    /// Sections that were not objects (their metrics stay NULL).
    errors: Vec<(Field, SoftReason)>,
}

/// Where a top-level key goes.
#[derive(Clone, Copy)]
enum Slot {
    Time,
    Id(usize),
    Metric(usize),
    /// A nested section at the top level (`gpu`, `host`, `collection`).
    Section(usize),
    Metrics,
    /// Kafka Connect's JSON envelope, `{"schema": ..., "payload": {flat row}}`: the
    /// payload's fields are read as top-level ones, so a topic a Connect JDBC sink also
    /// reads (schemas enabled) can feed gpu-health too.
    Payload,
}

static TOP_KEYS: LazyLock<HashMap<&'static str, Slot>> = LazyLock::new(|| {
    let mut m = HashMap::new();
    m.insert("timestamp", Slot::Time);
    m.insert("time", Slot::Time);
    for (i, name) in SECTIONS[..TOP_SECTIONS].iter().enumerate() {
        m.insert(*name, Slot::Section(i));
    }
    m.insert("metrics", Slot::Metrics);
    m.insert("payload", Slot::Payload);
    for (name, id) in [
        ("gpu_uuid", ID_GPU_UUID),
        ("hostname", ID_HOSTNAME),
        ("pci_bus_id", ID_PCI_BUS_ID),
        ("device_index", ID_DEVICE_INDEX),
        ("gpu_model", ID_MODEL),
        ("rack_id", ID_RACK),
        ("cluster_id", ID_CLUSTER),
        ("datacenter", ID_DATACENTER),
    ] {
        m.insert(name, Slot::Id(id));
    }
    debug_assert!(
        IDENTITY[1..]
            .iter()
            .enumerate()
            .all(|(i, n)| matches!(m.get(n), Some(Slot::Id(j)) if *j == i))
    );
    for (i, c) in METRICS.iter().enumerate() {
        m.insert(c.name, Slot::Metric(i));
    }
    m
});

/// Where a field of a nested section goes.
#[derive(Clone, Copy)]
enum Target {
    Id(usize),
    Metric(usize),
}

/// The nested sections; each has one key map, so a field costs one hash lookup.
/// The first `TOP_SECTIONS` sit at the top level, the rest under `metrics`.
const SECTIONS: [&str; 9] = [
    "gpu",
    "host",
    "collection",
    "health",
    "memory",
    "performance",
    "clocks",
    "utilization",
    "pcie",
];
const TOP_SECTIONS: usize = 3;
/// `Field::Section` of the `metrics` object itself.
const METRICS_SECTION: usize = SECTIONS.len();

static SECTION_KEYS: LazyLock<Vec<HashMap<&'static str, Target>>> = LazyLock::new(|| {
    let mut maps: Vec<HashMap<&'static str, Target>> =
        SECTIONS.iter().map(|_| HashMap::new()).collect();
    let ids = [
        (0, "gpu_uuid", ID_GPU_UUID),
        (0, "pci_bus_id", ID_PCI_BUS_ID),
        (0, "device_index", ID_DEVICE_INDEX),
        (0, "model", ID_MODEL),
        (1, "hostname", ID_HOSTNAME),
        (1, "rack_id", ID_RACK),
        (1, "cluster_id", ID_CLUSTER),
        (1, "datacenter", ID_DATACENTER),
    ];
    for (section, key, id) in ids {
        maps[section].insert(key, Target::Id(id));
    }
    for (i, c) in METRICS.iter().enumerate() {
        if let Some(section) = SECTIONS.iter().position(|s| *s == c.nested.0) {
            maps[section].insert(c.nested.1, Target::Metric(i));
        }
    }
    maps
});

struct EnvelopeSeed;

impl<'de> DeserializeSeed<'de> for EnvelopeSeed {
    type Value = Envelope<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Envelope<'de>, D::Error> {
        d.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut env = Envelope {
            time: None,
            ids: Default::default(),
            metrics: std::array::from_fn(|_| None),
            nested_metric: [false; N_METRICS],
            errors: Vec::new(),
        };
        top_level_fields(&mut map, &mut env, true)?;
        Ok(env)
    }
}

/// Reads an object's fields into `env` as top-level ones; `outer` allows a Connect
/// `payload` inside (one level only).
fn top_level_fields<'de, A: MapAccess<'de>>(
    map: &mut A,
    env: &mut Envelope<'de>,
    outer: bool,
) -> Result<(), A::Error> {
    while let Some(Key(key)) = map.next_key::<Key>()? {
        match TOP_KEYS.get(key.as_ref()) {
            None => {
                map.next_value::<IgnoredAny>()?;
            }
            Some(Slot::Payload) if !outer => {
                map.next_value::<IgnoredAny>()?;
            }
            Some(Slot::Time) => env.time = Some(map.next_value()?),
            Some(Slot::Id(i)) => env.ids[*i] = Some(map.next_value()?),
            Some(Slot::Metric(i)) => {
                env.metrics[*i] = Some(map.next_value()?);
                env.nested_metric[*i] = false;
            }
            Some(Slot::Section(section)) => map.next_value_seed(Section {
                section: *section,
                env,
            })?,
            Some(Slot::Metrics) => map.next_value_seed(MetricsSection { env })?,
            Some(Slot::Payload) => map.next_value_seed(ConnectPayload { env })?,
        }
    }
    Ok(())
}

/// The `payload` of a Kafka Connect JSON envelope: a flat row.
struct ConnectPayload<'e, 'de> {
    env: &'e mut Envelope<'de>,
}

impl<'de> DeserializeSeed<'de> for ConnectPayload<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ConnectPayload<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kafka Connect payload object (a flat row)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        top_level_fields(&mut map, self.env, false)
    }
}

/// One nested object whose leaves go to identity or metric slots.
struct Section<'e, 'de> {
    section: usize,
    env: &'e mut Envelope<'de>,
}

impl<'de> DeserializeSeed<'de> for Section<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Section<'_, '_> {
    /// Not an object: the section's metrics stay NULL, the rest of the sample counts.
    fn wrong_kind(self) {
        self.env
            .errors
            .push((Field::Section(self.section), SoftReason::WrongType));
    }
}

/// The visits of a section value that is not an object: each calls `wrong_kind` (a
/// null, a boolean, a number, a string or an array, whose items are skipped).
macro_rules! not_an_object {
    () => {
        fn visit_unit<E>(self) -> Result<(), E> {
            self.wrong_kind();
            Ok(())
        }
        fn visit_none<E>(self) -> Result<(), E> {
            self.wrong_kind();
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            self.wrong_kind();
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            self.wrong_kind();
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            self.wrong_kind();
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            self.wrong_kind();
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            self.wrong_kind();
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            self.wrong_kind();
            Ok(())
        }
    };
}

impl<'de> Visitor<'de> for Section<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object for `{}`", SECTIONS[self.section])
    }
    not_an_object!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let keys = &SECTION_KEYS[self.section];
        while let Some(Key(key)) = map.next_key::<Key>()? {
            match keys.get(key.as_ref()) {
                Some(Target::Id(id)) => self.env.ids[*id] = Some(map.next_value()?),
                Some(Target::Metric(i)) => {
                    self.env.metrics[*i] = Some(map.next_value()?);
                    self.env.nested_metric[*i] = true;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The `metrics` object: a map of sections.
struct MetricsSection<'e, 'de> {
    env: &'e mut Envelope<'de>,
}

impl<'de> DeserializeSeed<'de> for MetricsSection<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl MetricsSection<'_, '_> {
    fn wrong_kind(self) {
        self.env
            .errors
            .push((Field::Section(METRICS_SECTION), SoftReason::WrongType));
    }
}

impl<'de> Visitor<'de> for MetricsSection<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object for `metrics`")
    }
    not_an_object!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let Some(i) = SECTIONS[TOP_SECTIONS..].iter().position(|s| *s == key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let section = TOP_SECTIONS + i;
            map.next_value_seed(Section {
                section,
                env: &mut *self.env,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::schema::{FB_USED, GPU_TEMP, POWER, metric_index};

    fn limits() -> DecodeLimits {
        DecodeLimits {
            max_message_bytes: 1 << 20,
            max_future_skew_us: 300_000_000,
            now_us: parse_rfc3339("2026-11-30T00:00:00Z").unwrap(),
        }
    }

    const NESTED: &str = r#"{"timestamp":"2026-02-11T10:30:00.000Z",
      "gpu":{"gpu_uuid":"GPU-3f2a0000-1111-2222-3333-444455556666","pci_bus_id":"00000000:07:00.0","device_index":0,"model":"NVIDIA H100 80GB HBM3"},
      "host":{"hostname":"dgx-h100-017","rack_id":"r12","cluster_id":"c1","datacenter":"dc1"},
      "metrics":{"health":{"gpu_temp_c":64.0,"memory_temp_c":71.0,"power_usage_w":412.5,"throttle_reasons":0},
        "memory":{"fb_used_mib":40960,"fb_free_mib":40599,"fb_total_mib":81559,"memory_utilization_pct":37.0,
          "ecc_sbe_volatile":0,"ecc_dbe_volatile":0,"ecc_sbe_aggregate":12,"ecc_dbe_aggregate":0,"retired_pages_dbe":0},
        "performance":{"sm_active":0.82,"sm_occupancy":0.41,"tensor_active":0.55,"dram_active":0.38,
          "pcie_tx_bytes_per_sec":1.2e9,"pcie_rx_bytes_per_sec":3.4e9},
        "clocks":{"sm_clock_mhz":1980,"mem_clock_mhz":2619},
        "utilization":{"gpu_utilization_pct":98.0,"mem_copy_utilization_pct":40.0},
        "future_section":{"x":1}},
      "collection":{"latency_ms":12},"unknown":[1,{"a":2}]}"#;

    fn sample(json: &str) -> RawSample<'_> {
        match decode(json.as_bytes(), &limits()) {
            Decoded::Sample(s) => *s,
            Decoded::Dead(r, d) => panic!("unexpected dead letter {r}: {d}"),
        }
    }

    fn reason(json: &str) -> DeadReason {
        match decode(json.as_bytes(), &limits()) {
            Decoded::Sample(_) => panic!("expected a dead letter for {json}"),
            Decoded::Dead(r, _) => r,
        }
    }

    #[test]
    fn nested_example_from_the_design_decodes_with_units() {
        let s = sample(NESTED);
        assert_eq!(s.time_us, 1_770_805_800_000_000);
        assert_eq!(s.gpu_uuid, "GPU-3f2a0000-1111-2222-3333-444455556666");
        assert_eq!(s.hostname, "dgx-h100-017");
        assert_eq!(s.device_index, Some(0));
        assert_eq!(s.values[GPU_TEMP], Some(64.0));
        assert_eq!(s.values[POWER], Some(412.5));
        assert_eq!(s.values[FB_USED], Some(40960.0 * 1_048_576.0));
        assert_eq!(s.values[metric_index("collection_latency_ms")], Some(12.0));
        assert!(s.errors.is_empty());
    }

    #[test]
    fn the_gpus_own_limits_decode_in_both_shapes() {
        // DESIGN 2.1: power limit, slowdown/shutdown, memory max, T.Limit headroom under
        // `metrics.health`, the maximum SM clock under `gpu`, exhausted banks under
        // `metrics.memory`; the flat row names the columns.
        let nested = sample(
            r#"{"timestamp":"2026-02-11T10:30:00Z","gpu":{"gpu_uuid":"GPU-3f2a0000-1111",
                "max_sm_clock_mhz":1980},"host":{"hostname":"h1"},
                "metrics":{"health":{"power_limit_w":700.0,"slowdown_temp_c":89,
                "shutdown_temp_c":92,"memory_max_op_temp_c":95,"gpu_temp_tlimit_c":-3},
                "memory":{"remap_banks_exhausted":1}}}"#,
        );
        let flat = sample(
            r#"{"time":1770805800000,"gpu_uuid":"GPU-3f2a0000-1111","hostname":"h1",
                "power_limit":700.0,"slowdown_temp":89,"shutdown_temp":92,
                "memory_max_op_temp":95,"gpu_temp_tlimit":-3,"max_sm_clock_mhz":1980,
                "remap_banks_exhausted":1}"#,
        );
        for s in [&nested, &flat] {
            let v = |name: &str| s.values[metric_index(name)];
            assert_eq!(v("power_limit"), Some(700.0));
            assert_eq!(v("slowdown_temp"), Some(89.0));
            assert_eq!(v("shutdown_temp"), Some(92.0));
            assert_eq!(v("memory_max_op_temp"), Some(95.0));
            assert_eq!(v("gpu_temp_tlimit"), Some(-3.0));
            assert_eq!(v("max_sm_clock_mhz"), Some(1980.0));
            assert_eq!(v("remap_banks_exhausted"), Some(1.0));
            assert!(s.errors.is_empty());
        }
    }

    #[test]
    fn flat_row_with_epoch_millis_decodes_without_unit_scaling() {
        let s = sample(
            r#"{"time":1770805800000,"gpu_uuid":"GPU-3f2a0000-1111","hostname":"h1",
                "fb_used_bytes":1024,"gpu_temp":50,"row_remap_pending":true}"#,
        );
        assert_eq!(s.time_us, 1_770_805_800_000_000);
        assert_eq!(s.values[FB_USED], Some(1024.0));
        assert_eq!(s.values[metric_index("row_remap_pending")], Some(1.0));
    }

    #[test]
    fn kafka_connect_envelope_reads_its_payload() {
        let s = sample(
            r#"{"schema":{"type":"struct","fields":[{"field":"time","type":"int64"}],
                          "payload":"not this one"},
                "payload":{"time":1770805800000,"gpu_uuid":"GPU-3f2a0000-1111",
                           "hostname":"h1","gpu_temp":50,"payload":{"gpu_temp":99}}}"#,
        );
        assert_eq!(s.time_us, 1_770_805_800_000_000);
        assert_eq!(s.gpu_uuid, "GPU-3f2a0000-1111");
        assert_eq!(
            s.values[GPU_TEMP],
            Some(50.0),
            "a nested payload is not read"
        );
        assert_eq!(
            reason(r#"{"schema":{},"payload":[1]}"#),
            DeadReason::Malformed,
            "a payload that is not a row"
        );
    }

    #[test]
    fn offsets_are_honoured() {
        let a = parse_rfc3339("2026-02-11T12:30:00+02:00").unwrap();
        let b = parse_rfc3339("2026-02-11T10:30:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            parse_rfc3339("2026-02-11T10:30:00.5Z").unwrap(),
            b + 500_000
        );
        assert!(parse_rfc3339("2026-02-30T10:30:00Z").is_none());
    }

    #[test]
    fn soft_errors_null_the_metric_and_keep_the_row() {
        let s = sample(
            r#"{"time":"2026-02-11T10:30:00Z","gpu_uuid":"GPU-3f2a0000","hostname":"h",
               "gpu_temp":"64","memory_temp":"NaN","power_usage":-5,"sm_active":1.7,
               "ecc_sbe_aggregate":-1,"throttle_reasons":4.5}"#,
        );
        let mut got: Vec<_> = s.errors.iter().map(|(f, r)| (f.name(), *r)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("ecc_sbe_aggregate", SoftReason::OutOfRange),
                ("gpu_temp", SoftReason::WrongType),
                ("memory_temp", SoftReason::NotFinite),
                ("power_usage", SoftReason::OutOfRange),
                ("sm_active", SoftReason::OutOfRange),
                ("throttle_reasons", SoftReason::WrongType),
            ]
        );
        assert!(s.values.iter().all(|v| v.is_none()));
    }

    #[test]
    fn hard_errors_have_precise_reasons() {
        assert_eq!(reason(r#"{"time": "#), DeadReason::NotJson);
        assert_eq!(reason("[1,2]"), DeadReason::NotObject);
        assert_eq!(reason("42"), DeadReason::NotObject);
        assert_eq!(
            reason(r#"{"time":1,"hostname":"h"}"#),
            DeadReason::MissingGpuUuid
        );
        assert_eq!(
            reason(r#"{"time":1,"gpu_uuid":"nope","hostname":"h"}"#),
            DeadReason::InvalidGpuUuid
        );
        assert_eq!(
            reason(r#"{"time":1,"gpu_uuid":"GPU-12345678"}"#),
            DeadReason::MissingHostname
        );
        assert_eq!(
            reason(r#"{"gpu_uuid":"GPU-12345678","hostname":"h"}"#),
            DeadReason::MissingTimestamp
        );
        assert_eq!(
            reason(r#"{"time":"yesterday","gpu_uuid":"GPU-12345678","hostname":"h"}"#),
            DeadReason::InvalidTimestamp
        );
        assert_eq!(
            reason(r#"{"time":"1999-12-31T23:59:59Z","gpu_uuid":"GPU-12345678","hostname":"h"}"#),
            DeadReason::TimestampTooOld
        );
        assert_eq!(
            reason(r#"{"time":"2099-01-01T00:00:00Z","gpu_uuid":"GPU-12345678","hostname":"h"}"#),
            DeadReason::TimestampInFuture
        );
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2 << 20));
        assert_eq!(reason(&big), DeadReason::TooLarge);
    }

    fn soft(s: &RawSample) -> Vec<(&'static str, SoftReason)> {
        let mut got: Vec<_> = s.errors.iter().map(|(f, r)| (f.name(), *r)).collect();
        got.sort();
        got
    }

    #[test]
    fn sections_of_the_wrong_kind_null_their_metrics_only() {
        for odd in ["null", "[1,2]", "\"x\"", "7", "true"] {
            let json = NESTED
                .replace(
                    r#""clocks":{"sm_clock_mhz":1980,"mem_clock_mhz":2619}"#,
                    &format!(r#""clocks":{odd}"#),
                )
                .replace(
                    r#""collection":{"latency_ms":12}"#,
                    &format!(r#""collection":{odd}"#),
                );
            let s = sample(&json);
            assert_eq!(
                soft(&s),
                vec![
                    ("clocks", SoftReason::WrongType),
                    ("collection", SoftReason::WrongType)
                ],
                "{odd}"
            );
            assert_eq!(s.values[metric_index("sm_clock_mhz")], None);
            assert_eq!(s.values[metric_index("collection_latency_ms")], None);
            assert_eq!(s.values[GPU_TEMP], Some(64.0), "other sections are kept");
        }
        let s = sample(
            r#"{"timestamp":"2026-02-11T10:30:00Z","gpu":{"gpu_uuid":"GPU-12345678"},
                "host":{"hostname":"h"},"metrics":null}"#,
        );
        assert_eq!(soft(&s), vec![("metrics", SoftReason::WrongType)]);
        // An identity section of the wrong kind leaves the sample without its GPU.
        assert_eq!(
            reason(r#"{"time":1770805800000,"gpu":"x","hostname":"h"}"#),
            DeadReason::MissingGpuUuid
        );
    }

    #[test]
    fn text_is_cleaned_so_that_the_database_stores_it() {
        let s = sample(
            r#"{"time":1770805800000,"gpu_uuid":"GPU-12345678\u0000","hostname":"h\u0007ost",
                "rack_id":"r0\u00001","gpu_model":"\u001b[31mH100","datacenter":"\u0000",
                "cluster_id":7}"#,
        );
        assert_eq!(s.gpu_uuid, "GPU-12345678");
        assert_eq!(s.hostname, "host");
        assert_eq!(s.rack_id.as_deref(), Some("r01"));
        assert_eq!(s.gpu_model.as_deref(), Some("[31mH100"));
        assert_eq!(s.datacenter, None, "nothing left after cleaning");
        assert_eq!(s.cluster_id, None);
        assert_eq!(
            soft(&s),
            vec![
                ("cluster_id", SoftReason::WrongType),
                ("datacenter", SoftReason::ControlChars),
                ("gpu_model", SoftReason::ControlChars),
                ("gpu_uuid", SoftReason::ControlChars),
                ("hostname", SoftReason::ControlChars),
                ("rack_id", SoftReason::ControlChars),
            ]
        );
        let long = "é".repeat(200);
        let json = format!(
            r#"{{"time":1770805800000,"gpu_uuid":"GPU-12345678","hostname":"h","gpu_model":"{long}"}}"#
        );
        let s = sample(&json);
        let model = s.gpu_model.as_deref().unwrap_or_default();
        assert_eq!(model.len(), MAX_TEXT_BYTES, "cut at a character boundary");
        assert!(long.starts_with(model));
        assert_eq!(soft(&s), vec![("gpu_model", SoftReason::TooLong)]);
        // An identity still invalid after cleaning is a dead letter, never cut.
        let uuid = format!("GPU-{}", "a".repeat(300));
        assert_eq!(
            reason(&format!(
                r#"{{"time":1770805800000,"gpu_uuid":"{uuid}","hostname":"h"}}"#
            )),
            DeadReason::InvalidGpuUuid
        );
        assert_eq!(
            reason(r#"{"time":1770805800000,"gpu_uuid":"GPU-12345678","hostname":"\u0000"}"#),
            DeadReason::InvalidHostname
        );
    }

    #[test]
    fn text_that_is_not_unicode_is_replaced_not_refused() {
        let s = sample(
            r#"{"time":1770805800000,"gpu_uuid":"GPU-12345678","hostname":"h",
                "rack_id":"r\ud800x","cluster_id":"\ud83d\ude00","gpu_temp":50}"#,
        );
        assert_eq!(s.rack_id.as_deref(), Some("r\u{fffd}x"));
        assert_eq!(s.cluster_id.as_deref(), Some("\u{1f600}"), "a pair is kept");
        assert_eq!(s.values[GPU_TEMP], Some(50.0));
        assert_eq!(soft(&s), vec![("message", SoftReason::InvalidUnicode)]);
        let mut bytes =
            br#"{"time":1770805800000,"gpu_uuid":"GPU-12345678","hostname":"h","rack_id":"r"#
                .to_vec();
        bytes.extend([0xff, 0xfe]);
        bytes.extend(br#""}"#);
        match decode(&bytes, &limits()) {
            Decoded::Sample(s) => {
                assert_eq!(s.rack_id.as_deref(), Some("r\u{fffd}\u{fffd}"));
                assert_eq!(soft(&s), vec![("message", SoftReason::InvalidUnicode)]);
            }
            Decoded::Dead(r, d) => panic!("{r}: {d}"),
        }
        // An escaped backslash before `u` is not an escape.
        let s = sample(
            r#"{"time":1770805800000,"gpu_uuid":"GPU-12345678","hostname":"h","rack_id":"a\\ud800"}"#,
        );
        assert_eq!(s.rack_id.as_deref(), Some(r"a\ud800"));
        assert!(s.errors.is_empty());
    }

    #[test]
    fn a_byte_order_mark_and_crlf_are_accepted() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(
            b"{\r\n\"time\":1770805800000,\r\n\"gpu_uuid\":\"GPU-12345678\",\"hostname\":\"h\"}\r\n",
        );
        assert!(matches!(decode(&bytes, &limits()), Decoded::Sample(_)));
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode(&bytes, &limits());
        }

        #[test]
        fn mutated_valid_messages_never_panic(pos in 0usize..1200, byte in proptest::prelude::any::<u8>()) {
            let mut v = NESTED.as_bytes().to_vec();
            let p = pos % v.len();
            v[p] = byte;
            let _ = decode(&v, &limits());
        }
    }
}
