//! Dead letters: messages that cannot be used at all (DESIGN 2.2) and events too late
//! to change a rollup (DESIGN 3), kept byte for byte with the reason and where they
//! came from, so that nothing is lost silently.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::schema::time_type;
use crate::dump::Message;

/// Why a message went to the dead letters. The names are the `error.reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadReason {
    NotJson,
    NotObject,
    TooLarge,
    Malformed,
    MissingGpuUuid,
    InvalidGpuUuid,
    MissingHostname,
    InvalidHostname,
    MissingTimestamp,
    InvalidTimestamp,
    TimestampTooOld,
    TimestampInFuture,
    TooLate,
    /// A row the database refused (a data error: a constraint, a value it cannot
    /// store), found by bisecting its flush.
    DbRejected,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::NotJson => "not_json",
            DeadReason::NotObject => "not_object",
            DeadReason::TooLarge => "too_large",
            DeadReason::Malformed => "malformed",
            DeadReason::MissingGpuUuid => "missing_gpu_uuid",
            DeadReason::InvalidGpuUuid => "invalid_gpu_uuid",
            DeadReason::MissingHostname => "missing_hostname",
            DeadReason::InvalidHostname => "invalid_hostname",
            DeadReason::MissingTimestamp => "missing_timestamp",
            DeadReason::InvalidTimestamp => "invalid_timestamp",
            DeadReason::TimestampTooOld => "timestamp_too_old",
            DeadReason::TimestampInFuture => "timestamp_in_future",
            DeadReason::TooLate => "too_late",
            DeadReason::DbRejected => "db_rejected",
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dead letter: the original bytes, the reason, and the source position.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: DeadReason,
    pub detail: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Known for `too_late` events, which were decoded before being judged.
    pub gpu_uuid: Option<String>,
    pub time_us: Option<i64>,
}

impl DeadLetter {
    pub fn new(msg: &Message, reason: DeadReason, detail: impl Into<String>) -> Self {
        DeadLetter {
            reason,
            detail: printable(detail.into()),
            topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            key: msg.key.clone(),
            value: msg.value.clone(),
            gpu_uuid: None,
            time_us: None,
        }
    }
}

/// The detail as the database stores text: control characters (NUL among them, which
/// PostgreSQL refuses) shown as escapes.
pub(crate) fn printable(detail: String) -> String {
    if detail.chars().any(char::is_control) {
        detail.escape_debug().to_string()
    } else {
        detail
    }
}

/// Arrow schema of the dead-letter dataset.
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, false),
        Field::new("gpu_uuid", DataType::Utf8, true),
        Field::new("time", time_type(), true),
    ]))
}

/// Lays dead letters out as one record batch.
pub fn dead_letters_to_batch(letters: &[DeadLetter]) -> Result<RecordBatch, ArrowError> {
    let mut reason = StringBuilder::new();
    let mut detail = StringBuilder::new();
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut key = BinaryBuilder::new();
    let mut value = BinaryBuilder::new();
    let mut gpu = StringBuilder::new();
    let mut time = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for d in letters {
        reason.append_value(d.reason.as_str());
        detail.append_value(&d.detail);
        topic.append_value(&d.topic);
        partition.append_value(d.partition);
        offset.append_value(d.offset);
        key.append_option(d.key.as_deref());
        value.append_value(&d.value);
        gpu.append_option(d.gpu_uuid.as_deref());
        time.append_option(d.time_us);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(reason.finish()),
        Arc::new(detail.finish()),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(key.finish()),
        Arc::new(value.finish()),
        Arc::new(gpu.finish()),
        Arc::new(time.finish()),
    ];
    RecordBatch::try_new(dead_letter_schema(), columns)
}
