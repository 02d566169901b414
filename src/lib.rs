//! gpu-health: a stream processor for NVIDIA GPU fleet telemetry.
//!
//! The data's way: `source` (messages) -> `event` (decode and validate into Arrow) ->
//! `window` (event-time rollups, in DataFusion) -> `health` (daily scores) -> `sink`.
//! `pipeline` wires them; `generate` makes synthetic fleets; `bench` measures.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod db;
pub mod dump;
pub mod event;
pub mod generate;
pub mod health;
pub mod pipeline;
pub mod progress;
pub mod replay;
pub mod sink;
pub mod source;
pub mod summary;
pub mod window;

use anyhow::Result;

/// Runs a pipeline config to the end of its (bounded) input.
pub async fn run_pipeline(cfg: config::PipelineConfig) -> Result<pipeline::RunReport> {
    // The sink first: it applies the schema that holds the offsets the source starts at.
    let sink = sink::Sink::from_config(&cfg.sink, &cfg.name).await?;
    let store = match &cfg.sink {
        config::SinkConfig::Timescale { consumer_group, .. } => Some(source::OffsetStore {
            url: db::database_url_from_env()?,
            group: consumer_group.clone().unwrap_or_else(|| cfg.name.clone()),
        }),
        config::SinkConfig::Parquet { .. } => None,
    };
    let source = source::Source::from_config(&cfg.source, store, &cfg.name)?;
    pipeline::Pipeline::new(cfg).run(source, sink).await
}
