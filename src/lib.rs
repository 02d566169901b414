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
pub mod metrics;
pub mod pipeline;
pub mod progress;
pub mod replay;
pub mod report;
pub mod sink;
pub mod source;
pub mod summary;
pub mod window;

use anyhow::Result;

/// Runs a pipeline config to the end of its (bounded) input.
pub async fn run_pipeline(cfg: config::PipelineConfig) -> Result<pipeline::RunReport> {
    tracing::info!(config = %cfg.redacted(), "effective configuration");
    if let Some(m) = &cfg.metrics {
        metrics::serve(&m.listen).await?;
    }
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: storing the state and leaving the group");
        let _ = stop_tx.send(true);
    });
    let topics = match &cfg.topics {
        Some(t) => Some(sink::TopicSink::connect(t).await?),
        None => None,
    };
    pipeline::Pipeline::new(cfg)
        .with_shutdown(stop_rx)
        .with_topics(topics)
        .run(source, sink)
        .await
}

/// SIGTERM (what service managers send) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
