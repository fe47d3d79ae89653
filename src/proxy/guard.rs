//! The connection guard around the proxy app (SPEC §3.7): at most `limits.max_connections`
//! concurrent client connections per listener, and a whole-header deadline of
//! `limits.request_header_timeout_seconds`.
//!
//! Pingora times out each *read* of a request header (60 s), so a client that sends one byte
//! every few seconds would hold a connection forever. The guard runs the connection's keep-alive
//! loop itself, so it can count the connection once and race each request's header against a
//! deadline; `early_request_filter` (the first hook after the header is parsed) disarms it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use crate::live::Live;
use crate::ops::metrics;

/// How long a kept-alive connection may sit idle before its next request (Pingora's default).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

tokio::task_local! {
    /// Set once the current request's header has been parsed.
    static HEADER_DONE: Arc<AtomicBool>;
}

/// Tells the guard that this connection's current request header is complete.
pub fn header_complete() {
    let _ = HEADER_DONE.try_with(|done| done.store(true, Relaxed));
}

/// Open connections of one listener.
struct Listener {
    addr: SocketAddr,
    open: AtomicUsize,
}

/// Wraps a `ServerApp` (the proxy) with the connection limit and the header deadline.
pub struct Guarded<A> {
    inner: Arc<A>,
    live: Arc<Live>,
    /// One counter per configured listener; listeners change only with an upgrade.
    listeners: Vec<Listener>,
    /// Connections whose local address matches no listener (not expected; counted apart).
    other: AtomicUsize,
}

impl<A> Guarded<A> {
    pub fn new(inner: A, live: Arc<Live>) -> Self {
        let listeners = live
            .snapshot()
            .config
            .listeners
            .iter()
            .filter_map(|l| l.address.parse().ok())
            .map(|addr| Listener {
                addr,
                open: AtomicUsize::new(0),
            })
            .collect();
        Guarded {
            inner: Arc::new(inner),
            live,
            listeners,
            other: AtomicUsize::new(0),
        }
    }

    /// The counter of the listener that accepted a connection on `local`: the exact address, else
    /// a listener on the unspecified address (0.0.0.0 or ::) with the same port.
    fn counter(&self, local: Option<SocketAddr>) -> &AtomicUsize {
        let Some(local) = local else {
            return &self.other;
        };
        let exact = self.listeners.iter().find(|l| l.addr == local);
        let wildcard = || {
            self.listeners
                .iter()
                .find(|l| l.addr.ip().is_unspecified() && l.addr.port() == local.port())
        };
        exact.or_else(wildcard).map_or(&self.other, |l| &l.open)
    }
}

/// Counts one open connection until dropped.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = self.live.snapshot().config.limits.clone();
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet().copied()));
        let counter = self.counter(local);
        let open = counter.fetch_add(1, Relaxed) + 1;
        let _open = Open(counter);
        if open > limits.max_connections {
            log::warn!(target: "refused", "connection refused: {open} open on this listener, limits.max_connections is {}", limits.max_connections);
            metrics::record_refusal("max_connections");
            return None;
        }
        let header_timeout = Duration::from_secs(limits.request_header_timeout_seconds);
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // HTTP/2 multiplexes requests on one connection; its header frames are not a slow read.
            return self.inner.process_new(stream, shutdown).await;
        }
        let mut stream = stream;
        let mut first = true;
        loop {
            let mut deadline = header_timeout;
            if !first {
                // Start the clock at the next request's first byte when the stream can peek.
                match tokio::time::timeout(KEEPALIVE_IDLE, stream.try_peek(&mut [0u8; 1])).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => deadline += KEEPALIVE_IDLE,
                    Ok(Err(_)) | Err(_) => return None,
                }
            }
            let done = Arc::new(AtomicBool::new(false));
            let request = HEADER_DONE.scope(done.clone(), self.inner.process_new(stream, shutdown));
            tokio::pin!(request);
            let next = tokio::select! {
                next = &mut request => next,
                _ = tokio::time::sleep(deadline) => {
                    if done.load(Relaxed) {
                        request.await
                    } else {
                        log::warn!(target: "refused", "connection closed: request header not complete within {}s", deadline.as_secs());
                        metrics::record_refusal("header_timeout");
                        return None;
                    }
                }
            };
            stream = next?;
            first = false;
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
