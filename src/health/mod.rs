//! Daily per-GPU health (HEALTH_MODEL.md): model limits, the scoring model, the daily
//! feature accumulation that feeds it, the `gpu_health_scores` rows, and the failure
//! probabilities of `gpu_failure_predictions`.

pub mod daily;
pub mod limits;
pub mod model;
pub mod predict;
pub mod scores;
pub mod span;

pub use daily::{HealthTracker, ScoredDay};
