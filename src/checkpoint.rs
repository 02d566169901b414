//! The engine's state per source partition (DESIGN 4: "replay what open windows
//! need"), so that a restart, or another instance taking a partition over, continues
//! exactly where the stored data ends.
//!
//! Offsets alone are not enough: open 1-minute and 15-minute windows, the counter
//! samples their deltas need (also the de-duplication index) and the day's health
//! accumulators live in memory, and a day of them would take a day of input to rebuild.
//! Rows are keyed by GPU, so a GPU's state belongs to the partition its rows come from.
//! A checkpoint holds, per partition: its clock (highest event time), where the
//! pipeline's watermark stood, and the state of its GPUs. It is encoded with postcard
//! (floats bit for bit) and compressed with zstd; `FORMAT` changes with the layout.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::health::HealthTracker;
use crate::health::daily::GpuHistory;
use crate::progress::{PartitionCheckpoint, SourcePosition};
use crate::window::WindowOperator;
use crate::window::operator::GpuWindows;

/// Layout version of the encoded state; a checkpoint of another version is refused.
const FORMAT: u32 = 1;

/// zstd level 1: the state is mostly empty histogram bins, and speed matters more.
const ZSTD_LEVEL: i32 = 1;

#[derive(Serialize, Deserialize)]
struct PartitionState {
    format: u32,
    /// The partition's highest event time.
    clock: Option<i64>,
    /// Where the pipeline's watermark and emissions stood.
    watermark: i64,
    emitted_upto: i64,
    /// The pipeline's newest accepted event time (judges a bounded input's last day).
    newest_event_us: i64,
    gpus: Vec<(GpuWindows, GpuHistory)>,
}

/// Encodes the state of every partition in `positions` (the next offset of each).
pub fn capture(
    window: &WindowOperator,
    health: &HealthTracker,
    positions: &[SourcePosition],
) -> Result<Vec<PartitionCheckpoint>> {
    let mut by_home: HashMap<i32, Vec<(GpuWindows, GpuHistory)>> = HashMap::new();
    for (gpu, windows) in window.export().into_iter().enumerate() {
        let gpu = gpu as u32;
        let Some(home) = window.home(gpu) else {
            continue;
        };
        let history = health.gpu_state(gpu).cloned().unwrap_or_default();
        by_home.entry(home).or_default().push((windows, history));
    }
    positions
        .iter()
        .map(|p| {
            let state = PartitionState {
                format: FORMAT,
                clock: window.partition_clock(p.partition),
                watermark: window.watermark(),
                emitted_upto: window.emitted_upto(),
                newest_event_us: health.max_event_us(),
                gpus: by_home.remove(&p.partition).unwrap_or_default(),
            };
            let bytes = postcard::to_stdvec(&state).context("encoding a checkpoint")?;
            let state =
                zstd::bulk::compress(&bytes, ZSTD_LEVEL).context("compressing a checkpoint")?;
            Ok(PartitionCheckpoint {
                topic: p.topic.clone(),
                partition: p.partition,
                next_offset: p.next_offset,
                state,
            })
        })
        .collect()
}

fn decode(c: &PartitionCheckpoint) -> Result<PartitionState> {
    let what = || format!("checkpoint of {}/{}", c.topic, c.partition);
    let bytes = zstd::stream::decode_all(c.state.as_slice()).with_context(what)?;
    let state: PartitionState = postcard::from_bytes(&bytes).with_context(what)?;
    if state.format != FORMAT {
        bail!(
            "{}: format {} where this build reads {FORMAT}; delete its row in \
             gpu_health.engine_checkpoints to rebuild the partition from the topic",
            what(),
            state.format
        );
    }
    Ok(state)
}

/// Loads partitions' checkpoints into the engine.
pub fn restore(
    window: &mut WindowOperator,
    health: &mut HealthTracker,
    checkpoints: &[PartitionCheckpoint],
    now: Instant,
) -> Result<()> {
    let states = checkpoints.iter().map(decode).collect::<Result<Vec<_>>>()?;
    // Several checkpoints may come from instances whose watermarks differed, and this
    // engine may be ahead of them all: it goes back to the lowest, so that nothing of
    // theirs is closed, pruned or judged too late before its data is in.
    let Some(watermark) = states.iter().map(|s| s.watermark).min() else {
        return Ok(());
    };
    let emitted_upto = states
        .iter()
        .map(|s| s.emitted_upto)
        .min()
        .unwrap_or(watermark);
    let clocks: Vec<(i32, Option<i64>)> = checkpoints
        .iter()
        .zip(&states)
        .map(|(c, s)| (c.partition, s.clock))
        .collect();
    window.restore_partitions(&clocks, watermark, emitted_upto, now);
    for (c, s) in checkpoints.iter().zip(states) {
        for (windows, history) in s.gpus {
            let gpu = window.import(windows, c.partition);
            health.restore_gpu(gpu, history, s.newest_event_us);
        }
    }
    Ok(())
}

/// Drops the state of partitions another instance owns now.
pub fn forget(window: &mut WindowOperator, health: &mut HealthTracker, partitions: &[i32]) {
    let gpus: Vec<u32> = (0..window.gpus().len() as u32)
        .filter(|&g| window.home(g).is_some_and(|h| partitions.contains(&h)))
        .collect();
    window.forget(&gpus);
    for &g in &gpus {
        health.forget_gpu(g);
    }
    for &p in partitions {
        window.forget_partition(p);
    }
}
