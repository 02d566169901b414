//! The health stage: `HealthTracker` behind the stage trait. Accumulates each GPU's
//! day from the admitted rows and the window stage's counter deltas, closes days as the
//! watermark passes them (`Flow::scored`), and snapshots per partition the daily state
//! of the GPUs at home there.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Flow, Stage};
use crate::event::columns::RawColumns;
use crate::health::HealthTracker;
use crate::health::daily::{GpuHistory, HealthParams};
use crate::window::Fleet;
use crate::window::operator::StateSize;

pub(crate) struct HealthStage {
    tracker: HealthTracker,
}

/// One partition's daily state.
#[derive(Serialize, Deserialize)]
struct PartitionDays {
    /// The pipeline's newest accepted event time (judges a bounded input's last day).
    newest_event_us: Option<i64>,
    /// By GPU UUID (ids are this process's own).
    gpus: Vec<(String, GpuHistory)>,
}

impl HealthStage {
    pub fn new(params: HealthParams) -> Self {
        HealthStage {
            tracker: HealthTracker::new(params),
        }
    }
}

impl Stage for HealthStage {
    fn name(&self) -> &'static str {
        "health"
    }

    fn on_batch<'a>(&'a mut self, flow: &'a mut Flow<'_>) -> BoxFuture<'a, Result<()>> {
        if let Some(raw) = flow.raw {
            self.tracker.observe(&RawColumns::new(raw), &flow.admission);
        }
        async { Ok(()) }.boxed()
    }

    fn on_watermark(&mut self, flow: &mut Flow<'_>) -> Result<()> {
        // Days close only after this step's counter deltas are in.
        self.tracker.apply_deltas(&flow.emission.delta_changes);
        flow.scored = self
            .tracker
            .close_days(flow.emission.watermark, flow.fleet.gpus());
        Ok(())
    }

    fn finish(&mut self, flow: &mut Flow<'_>) -> Result<()> {
        self.tracker.apply_deltas(&flow.emission.delta_changes);
        flow.scored = self.tracker.finish(flow.fleet.gpus());
        Ok(())
    }

    fn snapshot(&self, fleet: &Fleet, partitions: &[i32]) -> Result<Vec<Vec<u8>>> {
        let mut by_home: HashMap<i32, Vec<(String, GpuHistory)>> = HashMap::new();
        for (gpu, info) in fleet.gpus().iter().enumerate() {
            let Some(home) = fleet.home(gpu as u32) else {
                continue;
            };
            let history = self
                .tracker
                .gpu_state(gpu as u32)
                .cloned()
                .unwrap_or_default();
            by_home
                .entry(home)
                .or_default()
                .push((info.uuid.clone(), history));
        }
        partitions
            .iter()
            .map(|p| {
                let state = PartitionDays {
                    newest_event_us: self.tracker.max_event_us(),
                    gpus: by_home.remove(p).unwrap_or_default(),
                };
                postcard::to_stdvec(&state).context("encoding the daily health state")
            })
            .collect()
    }

    fn restore(&mut self, fleet: &mut Fleet, states: &[(i32, &[u8])], _now: Instant) -> Result<()> {
        for (p, bytes) in states {
            let state: PartitionDays = postcard::from_bytes(bytes)
                .with_context(|| format!("decoding the daily health state of partition {p}"))?;
            for (uuid, history) in state.gpus {
                let Some(gpu) = fleet.id(&uuid) else {
                    bail!("partition {p}: GPU {uuid} has daily state but no window state");
                };
                self.tracker
                    .restore_gpu(gpu, history, state.newest_event_us);
            }
        }
        Ok(())
    }

    fn forget(&mut self, gpus: &[u32], _partitions: &[i32]) {
        for &g in gpus {
            self.tracker.forget_gpu(g);
        }
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            approx_bytes: self.tracker.state_bytes(),
            ..StateSize::default()
        }
    }
}
