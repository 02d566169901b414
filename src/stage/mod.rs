//! The stage trait the engine runs, and the engine that runs a list of stages.
//!
//! A micro-batch flows down the stages in a `Flow`: the decoded raw rows, what each
//! stage decided about them (the window stage's verdicts and rollups, the health
//! stage's closed days) and the fleet of GPUs they share. The engine calls every
//! stage's `on_batch`, then every stage's `on_watermark`, in list order, and never
//! names a stage: snapshots, restores and forgetting go through the same trait
//! (`crate::checkpoint` stores them per partition). Modelled on arroyo's
//! `ArrowOperator`: `process_batch`, `handle_watermark`, `handle_checkpoint`.
//!
//! The two stages are adapters over their state machines, which know nothing of this
//! trait: `window::WindowStage` (`crate::window::WindowOperator`) and
//! `health::HealthStage` (`crate::health::HealthTracker`).

pub(crate) mod health;
pub(crate) mod window;

use std::time::{Duration, Instant};

use anyhow::Result;
use datafusion::arrow::record_batch::RecordBatch;
use futures_util::future::BoxFuture;

use crate::config::{PipelineConfig, SourceConfig};
use crate::health::ScoredDay;
use crate::internal_events::Events;
use crate::window::Fleet;
use crate::window::operator::{Admission, Emission, StateSize};

pub(crate) use self::health::HealthStage;
pub(crate) use self::window::WindowStage;

/// One micro-batch as it flows down the stages. Upstream stages fill the fields that
/// downstream ones read.
pub(crate) struct Flow<'a> {
    /// Every GPU seen: ids, identities and home partitions.
    pub fleet: &'a mut Fleet,
    /// Where stages report what happened (dead letters, late rows, ...).
    pub events: &'a Events,
    /// Wall time of this step (partition idleness is judged by it).
    pub now: Instant,
    /// The decoded rows; none at the end of a bounded input.
    pub raw: Option<&'a RecordBatch>,
    /// Each raw row's source partition.
    pub partitions: &'a [i32],
    /// Window stage, `on_batch`: each row's verdict and GPU id.
    pub admission: Admission,
    /// Window stage, `on_watermark` or `finish`: the rollups emitted, the counter
    /// deltas they changed, the watermark they were emitted at.
    pub emission: Emission,
    /// Window stage: the newest event time seen minus the watermark, µs.
    pub behind_newest_us: Option<i64>,
    /// Health stage: the GPU-days closed.
    pub scored: Vec<ScoredDay>,
}

/// What the stages made of one micro-batch.
#[derive(Default)]
pub(crate) struct StepOutput {
    pub admission: Admission,
    pub emission: Emission,
    pub behind_newest_us: Option<i64>,
    pub scored: Vec<ScoredDay>,
}

/// A step of the engine. Every method but `name` and `on_batch` defaults to doing
/// nothing, for stages without that concern.
pub(crate) trait Stage: Send {
    /// Names the stage's state in a checkpoint; fixed for the life of the format.
    fn name(&self) -> &'static str;

    /// A micro-batch: reads what upstream stages decided, adds its own decisions.
    fn on_batch<'a>(&'a mut self, flow: &'a mut Flow<'_>) -> BoxFuture<'a, Result<()>>;

    /// After every stage saw the batch: event time moved; emit what closed.
    fn on_watermark(&mut self, _flow: &mut Flow<'_>) -> Result<()> {
        Ok(())
    }

    /// The end of a bounded input: emit everything still open.
    fn finish(&mut self, _flow: &mut Flow<'_>) -> Result<()> {
        Ok(())
    }

    /// The source now reads these partitions (before their first message).
    fn on_assign(&mut self, _partitions: &[i32], _now: Instant) {}

    /// The pipeline stood still for `stalled`, waiting for its sink (not idleness).
    fn on_stall(&mut self, _stalled: Duration, _now: Instant) {}

    /// The state of each of `partitions` (in that order) at this moment: whatever a
    /// new owner of the partition needs to go on exactly from here.
    fn snapshot(&self, _fleet: &Fleet, partitions: &[i32]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![Vec::new(); partitions.len()])
    }

    /// Takes partitions over from their snapshots, all at once (stages earlier in the
    /// list have restored theirs, so the fleet knows the partitions' GPUs).
    fn restore(
        &mut self,
        _fleet: &mut Fleet,
        _states: &[(i32, &[u8])],
        _now: Instant,
    ) -> Result<()> {
        Ok(())
    }

    /// Drops the state of `gpus`, at home in `partitions`, which another instance owns
    /// now.
    fn forget(&mut self, _gpus: &[u32], _partitions: &[i32]) {}

    /// The state held, for metrics and the bench.
    fn state_size(&self) -> StateSize {
        StateSize::default()
    }
}

/// The stages of a pipeline, in the data's order: windows, then daily health.
pub(crate) fn standard(cfg: &PipelineConfig) -> Vec<Box<dyn Stage>> {
    let mut wcfg = cfg.window.to_window_config();
    if matches!(cfg.source, SourceConfig::File { .. }) {
        // A dump is read one partition after another when it was written so: a
        // partition not read yet is not idle, it is waiting its turn.
        wcfg.idle_timeout = None;
    }
    vec![
        Box::new(WindowStage::new(wcfg)),
        Box::new(HealthStage::new(cfg.health.params(wcfg.late_horizon_us))),
    ]
}

/// Runs micro-batches through a list of stages that share one fleet.
pub(crate) struct Engine {
    stages: Vec<Box<dyn Stage>>,
    fleet: Fleet,
}

impl Engine {
    pub fn new(stages: Vec<Box<dyn Stage>>) -> Self {
        Engine {
            stages,
            fleet: Fleet::default(),
        }
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn stages(&self) -> &[Box<dyn Stage>] {
        &self.stages
    }

    /// The stages and the fleet, for restoring and forgetting partitions.
    pub fn parts_mut(&mut self) -> (&mut [Box<dyn Stage>], &mut Fleet) {
        (&mut self.stages, &mut self.fleet)
    }

    /// One micro-batch: every stage's `on_batch`, then every stage's `on_watermark`.
    pub async fn step(
        &mut self,
        raw: &RecordBatch,
        partitions: &[i32],
        events: &Events,
        now: Instant,
    ) -> Result<StepOutput> {
        let mut flow = Flow::new(&mut self.fleet, events, now, Some(raw), partitions);
        for s in &mut self.stages {
            s.on_batch(&mut flow).await?;
        }
        for s in &mut self.stages {
            s.on_watermark(&mut flow)?;
        }
        Ok(flow.into_output())
    }

    /// The end of a bounded input: every stage's `finish`.
    pub fn finish(&mut self, events: &Events, now: Instant) -> Result<StepOutput> {
        let mut flow = Flow::new(&mut self.fleet, events, now, None, &[]);
        for s in &mut self.stages {
            s.finish(&mut flow)?;
        }
        Ok(flow.into_output())
    }

    pub fn on_assign(&mut self, partitions: &[i32], now: Instant) {
        for s in &mut self.stages {
            s.on_assign(partitions, now);
        }
    }

    pub fn on_stall(&mut self, stalled: Duration, now: Instant) {
        for s in &mut self.stages {
            s.on_stall(stalled, now);
        }
    }

    /// The state of every stage together (GPUs: the fleet's).
    pub fn state_size(&self) -> StateSize {
        let mut total = StateSize {
            gpus: self.fleet.len(),
            ..StateSize::default()
        };
        for s in &self.stages {
            let z = s.state_size();
            total.open_1m += z.open_1m;
            total.open_15m += z.open_15m;
            total.counter_samples += z.counter_samples;
            total.approx_bytes += z.approx_bytes;
        }
        total
    }
}

impl<'a> Flow<'a> {
    fn new(
        fleet: &'a mut Fleet,
        events: &'a Events,
        now: Instant,
        raw: Option<&'a RecordBatch>,
        partitions: &'a [i32],
    ) -> Self {
        Flow {
            fleet,
            events,
            now,
            raw,
            partitions,
            admission: Admission::default(),
            emission: Emission::default(),
            behind_newest_us: None,
            scored: Vec::new(),
        }
    }

    fn into_output(self) -> StepOutput {
        StepOutput {
            admission: self.admission,
            emission: self.emission,
            behind_newest_us: self.behind_newest_us,
            scored: self.scored,
        }
    }
}
