//! The window stage: `WindowOperator` behind the stage trait. Admits rows (verdicts in
//! `Flow::admission`), emits 1-minute and 15-minute rollups as event time moves, and
//! snapshots per partition its clock, where the watermark and emissions stood, and
//! the open windows and counter samples of the GPUs at home there.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::{Flow, Stage};
use crate::internal_events::LateMerged;
use crate::window::operator::{GpuWindows, StateSize};
use crate::window::{Fleet, Watermark, WindowConfig, WindowOperator};

pub(crate) struct WindowStage {
    op: WindowOperator,
    /// The batch's late rows, counted in `on_batch`, reported with its emission.
    late: (u64, u64),
}

/// One partition's window state.
#[derive(Serialize, Deserialize)]
struct PartitionWindows {
    /// The partition's highest event time.
    clock: Option<i64>,
    /// Where the pipeline's watermark and emissions stood.
    watermark: Watermark,
    emitted_upto: Watermark,
    gpus: Vec<GpuWindows>,
}

impl WindowStage {
    pub fn new(cfg: WindowConfig) -> Self {
        WindowStage {
            op: WindowOperator::new(cfg),
            late: (0, 0),
        }
    }
}

impl Stage for WindowStage {
    fn name(&self) -> &'static str {
        "window"
    }

    fn on_batch<'a>(&'a mut self, flow: &'a mut Flow<'_>) -> BoxFuture<'a, Result<()>> {
        async move {
            let Some(raw) = flow.raw else {
                return Ok(());
            };
            let (admission, late) = self
                .op
                .admit(flow.fleet, raw, flow.partitions, flow.now)
                .await?;
            flow.admission = admission;
            self.late = late;
            Ok(())
        }
        .boxed()
    }

    fn on_watermark(&mut self, flow: &mut Flow<'_>) -> Result<()> {
        let mut emission = self.op.close(flow.fleet, flow.now)?;
        let (rows_reemitted, behind_watermark) = std::mem::take(&mut self.late);
        (emission.late_updates, emission.behind_watermark) = (rows_reemitted, behind_watermark);
        flow.events.emit(LateMerged {
            behind_watermark,
            rows_reemitted,
        });
        flow.behind_newest_us = self.op.watermark_delay_us();
        flow.emission = emission;
        Ok(())
    }

    fn finish(&mut self, flow: &mut Flow<'_>) -> Result<()> {
        flow.emission = self.op.finish(flow.fleet)?;
        Ok(())
    }

    fn on_assign(&mut self, partitions: &[i32], now: Instant) {
        self.op.expect_partitions(partitions, now);
    }

    fn on_stall(&mut self, stalled: Duration, now: Instant) {
        self.op.discount_stall(stalled, now);
    }

    fn snapshot(&self, fleet: &Fleet, partitions: &[i32]) -> Result<Vec<Vec<u8>>> {
        let mut by_home: HashMap<i32, Vec<GpuWindows>> = HashMap::new();
        for (gpu, windows) in self.op.export(fleet).into_iter().enumerate() {
            if let Some(home) = fleet.home(gpu as u32) {
                by_home.entry(home).or_default().push(windows);
            }
        }
        partitions
            .iter()
            .map(|&p| {
                let state = PartitionWindows {
                    clock: self.op.partition_clock(p),
                    watermark: self.op.watermark(),
                    emitted_upto: self.op.emitted_upto(),
                    gpus: by_home.remove(&p).unwrap_or_default(),
                };
                postcard::to_stdvec(&state).context("encoding the window state")
            })
            .collect()
    }

    fn restore(&mut self, fleet: &mut Fleet, states: &[(i32, &[u8])], now: Instant) -> Result<()> {
        let states = states
            .iter()
            .map(|(p, bytes)| {
                postcard::from_bytes::<PartitionWindows>(bytes)
                    .map(|s| (*p, s))
                    .with_context(|| format!("decoding the window state of partition {p}"))
            })
            .collect::<Result<Vec<_>>>()?;
        // Several checkpoints may come from instances whose watermarks differed, and
        // this engine may be ahead of them all: it goes back to the lowest, so that
        // nothing of theirs is closed, pruned or judged too late before its data is in.
        let Some(watermark) = states.iter().map(|(_, s)| s.watermark).min() else {
            return Ok(());
        };
        let emitted_upto = states
            .iter()
            .map(|(_, s)| s.emitted_upto)
            .min()
            .unwrap_or(watermark);
        let clocks: Vec<(i32, Option<i64>)> = states.iter().map(|(p, s)| (*p, s.clock)).collect();
        self.op
            .restore_partitions(&clocks, watermark, emitted_upto, now);
        for (p, s) in states {
            for windows in s.gpus {
                self.op.import(fleet, windows, p);
            }
        }
        info!(partitions = clocks.len(), watermark = %self.op.watermark(), "window state restored");
        Ok(())
    }

    fn forget(&mut self, gpus: &[u32], partitions: &[i32]) {
        self.op.forget(gpus);
        for &p in partitions {
            self.op.forget_partition(p);
        }
    }

    fn state_size(&self) -> StateSize {
        self.op.state_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal_events::Events;
    use crate::stage::{Engine, StepOutput};
    use crate::window::test_support::{Sample, batch, rows};

    const A: &str = "GPU-0000000a";
    const B: &str = "GPU-0000000b";

    async fn step(engine: &mut Engine, samples: &[Sample], now: Instant) -> StepOutput {
        let (raw, parts) = batch(samples);
        engine
            .step(&raw, &parts, &Events::new(), now)
            .await
            .unwrap()
    }

    fn window_only() -> Engine {
        Engine::new(vec![Box::new(WindowStage::new(WindowConfig::default()))])
    }

    /// Snapshot -> restore into a fresh engine -> the same input gives the same output
    /// as the engine that never stopped, including a late row into an emitted window
    /// and a duplicate of a sample from before the snapshot.
    #[tokio::test]
    async fn a_restored_snapshot_goes_on_exactly_as_the_original() {
        let now = Instant::now();
        let mut original = window_only();
        original.on_assign(&[0, 1], now);
        step(
            &mut original,
            &[
                Sample(0, A, 0, 50.0, 1),
                Sample(10, A, 0, 60.0, 2),
                Sample(20, B, 1, 70.0, 0),
                Sample(200, A, 0, 80.0, 4),
                Sample(210, B, 1, 80.0, 0),
            ],
            now,
        )
        .await;
        let states = original.stages()[0]
            .snapshot(original.fleet(), &[0, 1])
            .unwrap();
        let mut restored = window_only();
        {
            let (stages, fleet) = restored.parts_mut();
            let states: Vec<(i32, &[u8])> = vec![(0, &states[0]), (1, &states[1])];
            stages[0].restore(fleet, &states, now).unwrap();
        }
        let rest = [
            Sample(30, A, 0, 90.0, 3),  // late, into the emitted minute 0
            Sample(10, A, 0, 10.0, 2),  // a duplicate of a sample before the snapshot
            Sample(400, A, 0, 40.0, 9), // closes minutes up to 340 s
            Sample(400, B, 1, 40.0, 0),
        ];
        let a = step(&mut original, &rest, now).await;
        let b = step(&mut restored, &rest, now).await;
        assert_eq!(a.admission.status, b.admission.status);
        assert_eq!(
            b.admission.status[1],
            crate::window::operator::RowStatus::Duplicate
        );
        assert_eq!(a.emission.watermark, b.emission.watermark);
        assert_eq!(rows(&a.emission.updates_1m), rows(&b.emission.updates_1m));
        assert!(
            rows(&b.emission.updates_1m)
                .iter()
                .any(|r| r.0 == 0 && r.3 == 3),
            "the late row re-emitted minute 0 with three samples"
        );
        let (fa, fb) = (
            original.finish(&Events::new(), now).unwrap(),
            restored.finish(&Events::new(), now).unwrap(),
        );
        assert_eq!(rows(&fa.emission.finals_1m), rows(&fb.emission.finals_1m));
        assert_eq!(rows(&fa.emission.finals_15m), rows(&fb.emission.finals_15m));
    }

    #[tokio::test]
    async fn forgetting_a_partition_drops_its_gpus_and_its_clock() {
        let now = Instant::now();
        let mut engine = window_only();
        engine.on_assign(&[0, 1], now);
        step(
            &mut engine,
            &[Sample(0, A, 0, 50.0, 0), Sample(0, B, 1, 50.0, 0)],
            now,
        )
        .await;
        let (stages, fleet) = engine.parts_mut();
        crate::checkpoint::forget(stages, fleet, &[1]);
        assert_eq!(engine.fleet().at_home_in(&[1]), Vec::<u32>::new());
        let finals = rows(
            &engine
                .finish(&Events::new(), now)
                .unwrap()
                .emission
                .finals_1m,
        );
        assert_eq!(
            finals.len(),
            1,
            "only partition 0's GPU is left: {finals:?}"
        );
        assert_eq!(finals[0].1, A);
    }
}
