//! gpu-health: a stream processor for NVIDIA GPU fleet telemetry.
//!
//! # Layout
//!
//! The data's way, each arrow a one-way dependency:
//!
//! ```text
//! source ──> event ──> stage: window ──> health ──> sink
//! (file,     (decode,   (rollups by      (daily      (Parquet, TimescaleDB,
//!  Kafka)     validate)  event time)      scores)     Kafka topics)
//! ```
//!
//! - `source`: topic dumps and the Kafka consumer group; `event`: both message shapes
//!   decoded and validated into Arrow batches, dead letters; `window`: buckets,
//!   watermarks (`Watermark`), mergeable state, counter deltas, DataFusion partial
//!   aggregates, the GPU `Fleet`; `health`: daily features, the scoring model, failure
//!   probabilities; `sink`: where flushes go.
//! - `stage`: the `Stage` trait (`on_batch`, `on_watermark`, `snapshot`/`restore`/
//!   `forget` per partition, `finish`, `state_size`) that the window and health stages
//!   implement, and the engine that runs a list of them; `checkpoint` stores any
//!   stage's snapshots per partition without knowing the stages.
//! - `pipeline`: runs a source through the engine into a sink (`run_pipeline`).
//! - Shared services: `db` (connections, TLS, migrations, the state store of offsets
//!   and checkpoints), `kafka` (every Kafka client from one set of properties),
//!   `internal_events` (what happened, logged and counted once for the run report and
//!   Prometheus), `metrics` (the scrape endpoint), `error` (boundary errors with a retry
//!   class), `shutdown`, `progress` (positions shared by source, pipeline and sink).
//! - Around the job: `config`, `generate` (synthetic fleets), `import` (nvidia-smi CSV,
//!   dcgm-exporter text and mapped CSV logs -> topic dumps), `replay`, `dump`, `report`,
//!   `summary`, `bench`.

pub mod bench;
pub mod config;
pub mod db;
pub mod dump;
pub mod error;
pub mod generate;
pub mod import;
pub mod pipeline;
pub mod replay;
pub mod report;
pub mod summary;

pub(crate) mod checkpoint;
pub(crate) mod event;
pub(crate) mod health;
pub(crate) mod internal_events;
pub(crate) mod kafka;
pub(crate) mod metrics;
pub(crate) mod progress;
pub(crate) mod shutdown;
pub(crate) mod sink;
pub(crate) mod source;
pub(crate) mod stage;
pub(crate) mod window;

pub use config::PipelineConfig;
pub use error::ErrorClass;
pub use internal_events::Tally;
pub use pipeline::{RunReport, run_pipeline, run_pipeline_with_database};
