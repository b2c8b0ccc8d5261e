//! Shutdown: a cancellation token fired by SIGTERM or SIGINT. Roles stop taking
//! new work when it fires, drain what is in flight, commit, and return.
//!
//! The token is tokio-util's [`CancellationToken`] (child tokens, drop guards);
//! [`crate::tasks::TaskSet`] runs a process's roles on it and bounds the drain.

pub use tokio_util::sync::CancellationToken;

/// Returns a token that fires on SIGTERM or SIGINT.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!(message = "SIGTERM received, draining."),
                        _ = int.recv() => tracing::info!(message = "SIGINT received, draining."),
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        t.cancel();
    });
    token
}
