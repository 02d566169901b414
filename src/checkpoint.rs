//! The engine's state per source partition (DESIGN 4: "replay what open windows
//! need"), so that a restart, or another instance taking a partition over, continues
//! exactly where the stored data ends.
//!
//! Offsets alone are not enough: the stages hold open windows, counter samples and the
//! day's health accumulators in memory, and a day of them would take a day of input to
//! rebuild. Rows are keyed by GPU, so a GPU's state belongs to the partition its rows
//! come from. A checkpoint holds, per partition, every stage's own snapshot of it
//! under the stage's name (see `crate::stage::Stage::snapshot`); this module knows no
//! stage. The envelope is encoded with postcard (floats bit for bit) and compressed
//! with zstd; `FORMAT` changes with the envelope or any stage's layout.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::progress::{PartitionCheckpoint, SourcePosition};
use crate::stage::Stage;
use crate::window::Fleet;

/// Layout version of the encoded state; a checkpoint of another version is refused.
/// 2: one snapshot per stage (1 had a fixed window + health layout).
/// 3: daily health v2 (coverage in seconds, lifecycle, counters; issue 13).
const FORMAT: u32 = 3;

/// zstd level 1: the state is mostly empty histogram bins, and speed matters more.
const ZSTD_LEVEL: i32 = 1;

#[derive(Serialize, Deserialize)]
struct PartitionState {
    format: u32,
    /// (stage name, its snapshot of the partition), in the engine's stage order.
    stages: Vec<(String, Vec<u8>)>,
}

/// Encodes the state of every partition in `positions` (the next offset of each).
pub(crate) fn capture(
    stages: &[Box<dyn Stage>],
    fleet: &Fleet,
    positions: &[SourcePosition],
) -> Result<Vec<PartitionCheckpoint>> {
    let partitions: Vec<i32> = positions.iter().map(|p| p.partition).collect();
    let mut snapshots = stages
        .iter()
        .map(|s| {
            let states = s
                .snapshot(fleet, &partitions)
                .with_context(|| format!("taking the {} stage's snapshot", s.name()))?;
            if states.len() != partitions.len() {
                bail!("the {} stage snapshot the wrong partitions", s.name());
            }
            Ok((s.name(), states.into_iter()))
        })
        .collect::<Result<Vec<_>>>()?;
    positions
        .iter()
        .map(|p| {
            let state = PartitionState {
                format: FORMAT,
                stages: snapshots
                    .iter_mut()
                    .map(|(name, states)| ((*name).to_owned(), states.next().unwrap_or_default()))
                    .collect(),
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
    // The format leads the envelope in both layouts, so another version is told
    // apart before its body is read.
    let format: u32 = postcard::take_from_bytes::<u32>(&bytes)
        .map(|(f, _)| f)
        .with_context(what)?;
    if format != FORMAT {
        bail!(
            "{}: format {format} where this build reads {FORMAT}; delete its row in \
             gpu_health.engine_checkpoints to rebuild the partition from the topic",
            what()
        );
    }
    postcard::from_bytes(&bytes).with_context(what)
}

/// Loads partitions' checkpoints into the stages, in the stages' order.
pub(crate) fn restore(
    stages: &mut [Box<dyn Stage>],
    fleet: &mut Fleet,
    checkpoints: &[PartitionCheckpoint],
    now: Instant,
) -> Result<()> {
    let states = checkpoints.iter().map(decode).collect::<Result<Vec<_>>>()?;
    for stage in stages.iter_mut() {
        let name = stage.name();
        let mine = checkpoints
            .iter()
            .zip(&states)
            .map(|(c, s)| {
                s.stages
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, bytes)| (c.partition, bytes.as_slice()))
                    .with_context(|| {
                        format!(
                            "checkpoint of {}/{} holds no state of the {name} stage",
                            c.topic, c.partition
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        stage
            .restore(fleet, &mine, now)
            .with_context(|| format!("restoring the {name} stage"))?;
    }
    Ok(())
}

/// Drops the state of partitions another instance owns now.
pub(crate) fn forget(stages: &mut [Box<dyn Stage>], fleet: &mut Fleet, partitions: &[i32]) {
    if partitions.is_empty() {
        return;
    }
    let gpus = fleet.at_home_in(partitions);
    for stage in stages.iter_mut() {
        stage.forget(&gpus, partitions);
    }
    fleet.release(&gpus);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEMO_PIPELINE, PipelineConfig};
    use crate::internal_events::Events;
    use crate::stage::{Engine, standard};
    use crate::window::test_support::{Sample, batch};

    fn engine() -> Engine {
        Engine::new(standard(
            &PipelineConfig::parse(DEMO_PIPELINE, "demo.toml").unwrap(),
        ))
    }

    fn at(partition: i32) -> SourcePosition {
        SourcePosition {
            topic: "t".into(),
            partition,
            next_offset: 7,
        }
    }

    #[tokio::test]
    async fn every_stage_comes_back_from_its_partitions_checkpoint() {
        let now = Instant::now();
        let mut a = engine();
        let (raw, parts) = batch(&[
            Sample(0, "GPU-0000000a", 0, 50.0, 1),
            Sample(0, "GPU-0000000b", 1, 60.0, 1),
        ]);
        a.step(&raw, &parts, &Events::new(), now).await.unwrap();
        let stored = capture(a.stages(), a.fleet(), &[at(0), at(1)]).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|c| c.next_offset == 7));
        // A new owner of partition 1 only: it gets that GPU, with its day open.
        let mut b = engine();
        let (stages, fleet) = b.parts_mut();
        restore(stages, fleet, &stored[1..], now).unwrap();
        assert_eq!(b.fleet().len(), 1);
        assert_eq!(b.fleet().gpu(0).uuid, "GPU-0000000b");
        let days = b.finish(&Events::new(), now).unwrap().scored;
        assert_eq!(days.len(), 1, "the restored GPU's day is scored");
    }

    #[test]
    fn a_checkpoint_of_another_format_is_refused_with_what_to_do() {
        let old = PartitionState {
            format: 1,
            stages: Vec::new(),
        };
        let bytes = postcard::to_stdvec(&old).unwrap();
        let c = PartitionCheckpoint {
            topic: "t".into(),
            partition: 3,
            next_offset: 0,
            state: zstd::bulk::compress(&bytes, ZSTD_LEVEL).unwrap(),
        };
        let err = format!("{:#}", decode(&c).err().unwrap());
        assert!(err.contains("format 1") && err.contains("t/3"), "{err}");
        assert!(err.contains("engine_checkpoints"), "{err}");
    }
}
