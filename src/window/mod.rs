//! Event time: buckets, watermarks, mergeable rollup state, counter deltas, and the
//! streaming operator that turns admitted raw rows into 1-minute and 15-minute rollups.
//!
//! The relational part (per-batch partial aggregates) runs in DataFusion over Arrow
//! batches (`partial`); the streaming state around it (open windows, watermarks,
//! counter carries, late updates) is kept in explicit structures (`operator`).

pub mod bucket;
pub mod counter;
pub mod fleet;
pub mod operator;
pub mod partial;
pub mod rollup;
pub mod stats;
#[cfg(test)]
pub(crate) mod test_support;
pub mod watermark;

pub use fleet::{Fleet, GpuInfo};
pub use operator::{WindowConfig, WindowOperator};
pub use watermark::Watermark;
