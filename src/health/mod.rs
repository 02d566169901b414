//! Daily per-GPU health (HEALTH_MODEL.md): model limits, the scoring model, the daily
//! feature accumulation that feeds it, and the `gpu_health_scores` rows.

pub mod daily;
pub mod limits;
pub mod model;
pub mod scores;

pub use daily::{HealthTracker, ScoredDay};
