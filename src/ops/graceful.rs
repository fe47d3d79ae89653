//! Closing the race at the end of a graceful upgrade or shutdown.
//!
//! When Pingora stops a listening service it first stops accepting, then calls the app's
//! `cleanup()`, and pingora-proxy's cleanup drops every connection still waiting for its request
//! header. That includes a connection accepted a moment before the listener stopped whose request
//! bytes had not arrived yet: the client sent a request and gets the connection closed without an
//! answer (seen in `tests/e2e/upgrade.rs` as hyper's `IncompleteMessage`, about one upgrade in six on
//! a loaded machine). [`LateCleanup`] delays that cleanup by a fraction of the grace period, so
//! such requests are read and answered; idle kept-alive connections are still closed, just later.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

/// The longest tether waits before the wrapped app's cleanup.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// A `ServerApp` that behaves as `inner`, except that its `cleanup()` runs later.
pub struct LateCleanup<A> {
    inner: Arc<A>,
    delay: Duration,
}

impl<A> LateCleanup<A> {
    /// Wraps `inner`; the delay is half of `grace_period_seconds`, at most one second, so it
    /// always ends before Pingora tears the runtime down.
    pub fn new(inner: A, grace_period_seconds: u64) -> Self {
        LateCleanup {
            inner: Arc::new(inner),
            delay: (Duration::from_secs(grace_period_seconds) / 2).min(MAX_DELAY),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for LateCleanup<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.delay).await;
        self.inner.cleanup().await;
    }
}
