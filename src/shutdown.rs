//! Being asked to stop: SIGTERM (what service managers send) or Ctrl-C. The pipeline
//! then stores its state without closing any window and the source leaves its
//! consumer group, so that other members take its partitions over at once.

use tokio::sync::watch;

/// Resolves `requested` once a stop is asked for (never, for `never`).
pub struct Shutdown {
    rx: Option<watch::Receiver<bool>>,
}

impl Shutdown {
    /// A shutdown nothing ever requests (benches, tests driving a pipeline by hand).
    pub fn never() -> Self {
        Shutdown { rx: None }
    }

    /// Listens for SIGTERM and Ctrl-C from now on (needs a running tokio runtime).
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            signal().await;
            tracing::info!("shutdown requested: storing the state and leaving the group");
            let _ = tx.send(true);
        });
        Shutdown { rx: Some(rx) }
    }

    /// Resolves when a stop is asked for.
    pub async fn requested(&mut self) {
        match &mut self.rx {
            Some(rx) => {
                if rx.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

async fn signal() {
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
