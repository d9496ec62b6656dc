//! Ctrl-C (SIGINT) and SIGTERM (what `kill`, systemd and container runtimes
//! send) mean the same to every batchq command: stop. `serve` finishes its
//! running step first; the others stop where they are.

/// Resolves at the first Ctrl-C or SIGTERM.
pub async fn stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
