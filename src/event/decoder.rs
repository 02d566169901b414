//! The decode stage: a micro-batch of messages -> one raw Arrow batch plus dead
//! letters, decoded in parallel on scoped threads (each thread owns its builders,
//! the batches are concatenated in message order).

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;

use super::batch::RawBatchBuilder;
use super::dead_letter::{DeadLetter, DeadReason};
use super::decode::{DecodeLimits, Decoded, SoftReason, decode};
use super::schema::raw_schema;
use crate::dump::Message;
use crate::error::DecodeError;

/// The decoded form of one micro-batch.
pub struct DecodedBatch {
    /// Raw rows in message order.
    pub raw: RecordBatch,
    /// For each raw row, the index of its message in the batch.
    pub row_message: Vec<usize>,
    pub dead: Vec<DeadLetter>,
    /// Soft validation failures by reason (`SoftReason::ALL` order).
    pub soft: SoftCounts,
}

/// Soft validation failures by reason (`SoftReason::ALL` order).
pub type SoftCounts = [u64; SoftReason::ALL.len()];

/// One thread's share: (raw rows, their message indexes, dead letters, soft counts).
type ChunkOutput = (RecordBatch, Vec<usize>, Vec<DeadLetter>, SoftCounts);

fn decode_chunk(
    msgs: &[Message],
    base: usize,
    limits: &DecodeLimits,
) -> Result<ChunkOutput, DecodeError> {
    let mut builder = RawBatchBuilder::with_capacity(msgs.len());
    let mut rows = Vec::with_capacity(msgs.len());
    let mut dead = Vec::new();
    let mut soft = SoftCounts::default();
    for (i, m) in msgs.iter().enumerate() {
        match decode(&m.value, limits) {
            Decoded::Sample(s) => {
                for (_, r) in &s.errors {
                    soft[r.index()] += 1;
                }
                builder.append(&s);
                rows.push(base + i);
            }
            Decoded::Dead(reason, detail) => dead.push(DeadLetter::new(m, reason, detail)),
        }
    }
    let batch = builder.finish()?;
    Ok((batch, rows, dead, soft))
}

/// Decodes a micro-batch on up to `threads` threads.
pub fn decode_batch(
    msgs: &[Message],
    limits: &DecodeLimits,
    threads: usize,
) -> Result<DecodedBatch, DecodeError> {
    let threads = threads.max(1).min(msgs.len().div_ceil(4096).max(1));
    let parts: Vec<Result<_, DecodeError>> = if threads == 1 {
        vec![decode_chunk(msgs, 0, limits)]
    } else {
        let chunk = msgs.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = msgs
                .chunks(chunk)
                .enumerate()
                .map(|(k, c)| s.spawn(move || decode_chunk(c, k * chunk, limits)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(DecodeError::Panicked)))
                .collect()
        })
    };
    let mut batches = Vec::with_capacity(parts.len());
    let mut row_message = Vec::with_capacity(msgs.len());
    let mut dead = Vec::new();
    let mut soft = SoftCounts::default();
    for p in parts {
        let (b, rows, d, s) = p?;
        batches.push(b);
        row_message.extend(rows);
        dead.extend(d);
        for (total, n) in soft.iter_mut().zip(s) {
            *total += n;
        }
    }
    let raw = if batches.len() == 1 {
        batches
            .pop()
            .unwrap_or_else(|| RecordBatch::new_empty(raw_schema()))
    } else {
        concat_batches(&raw_schema(), &batches)?
    };
    Ok(DecodedBatch {
        raw,
        row_message,
        dead,
        soft,
    })
}

/// A dead letter for an event judged too late, with what we know of it.
pub fn too_late_letter(msg: &Message, gpu_uuid: &str, time_us: i64, watermark: i64) -> DeadLetter {
    let mut d = DeadLetter::new(
        msg,
        DeadReason::TooLate,
        format!(
            "event at {} is beyond the late horizon (watermark {})",
            super::decode::fmt_time(time_us),
            super::decode::fmt_time(watermark)
        ),
    );
    d.gpu_uuid = Some(gpu_uuid.to_owned());
    d.time_us = Some(time_us);
    d
}
