//! Shutdown: a cancellation token fired by SIGTERM or SIGINT. Roles stop taking
//! new work when it fires, drain what is in flight, commit, and return.

pub use tokio_util_token::CancellationToken;

mod tokio_util_token {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::Notify;

    /// A cloneable, level-triggered cancellation flag.
    #[derive(Clone, Default, Debug)]
    pub struct CancellationToken {
        inner: Arc<Inner>,
    }

    #[derive(Default, Debug)]
    struct Inner {
        cancelled: AtomicBool,
        notify: Notify,
    }

    impl CancellationToken {
        /// A new, untriggered token.
        pub fn new() -> Self {
            Self::default()
        }
        /// Triggers the token; idempotent.
        pub fn cancel(&self) {
            self.inner.cancelled.store(true, Ordering::SeqCst);
            self.inner.notify.notify_waiters();
        }
        /// True once triggered.
        pub fn is_cancelled(&self) -> bool {
            self.inner.cancelled.load(Ordering::SeqCst)
        }
        /// Resolves once triggered.
        pub async fn cancelled(&self) {
            loop {
                let notified = self.inner.notify.notified();
                if self.is_cancelled() {
                    return;
                }
                notified.await;
            }
        }
    }
}

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
