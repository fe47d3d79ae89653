//! The connection guard around the proxy app (SPEC §3.7): at most `limits.max_connections`
//! concurrent client connections per listener, TLS included from accept; the TLS handshake
//! bounded by `limits.request_header_timeout_seconds`; then every request's header held to that
//! deadline and to `max_request_header_bytes`, and idle keep-alives closed after
//! `keepalive_timeout_seconds`, by the [`Watched`] stream wrapper.
//!
//! Pingora handshakes TLS before any app code with 60 s to spare, and serves all keep-alive
//! requests of a connection inside one `process_new`: so the guard accepts TLS listeners as TCP,
//! handshakes itself, and runs the HTTP/1 keep-alive loop itself to see where each request ends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::sync::Notify;

use super::conn::{ConnLimits, Signals, Watch, Watched};
use super::tls_accept::TlsAcceptor;
use crate::config::Limits;
use crate::instance::Instance;
use crate::telemetry::refusals;

tokio::task_local! {
    /// The signals of the HTTP/1 connection this task serves.
    static CONN: Arc<Signals>;
}

/// Tells the guard that this connection's current request header is complete; a no-op on
/// HTTP/2, whose streams are not timed by the guard.
pub fn header_complete() {
    let _ = CONN.try_with(|s| s.header_done());
}

/// Whether the stream saw a bare CR in this connection's current request line (which Pingora
/// rewrites before any hook sees it); false on HTTP/2.
pub fn bare_cr_in_request_line() -> bool {
    CONN.try_with(|s| s.take_bare_cr()).unwrap_or(false)
}

/// One listener: its open connections and, for TLS, its acceptor.
struct Listener {
    addr: SocketAddr,
    open: AtomicUsize,
    tls: Option<TlsAcceptor>,
}

/// Wraps the proxy app with the connection limit, the TLS handshake and the header deadlines.
pub struct Guarded<A> {
    inner: Arc<A>,
    live: Arc<Instance>,
    /// Listeners change only with an upgrade.
    listeners: Vec<Listener>,
    /// Connections whose local address matches no listener (not expected; counted apart).
    other: AtomicUsize,
    /// Set, and `closing` notified, when the app is cleaned up: kept-alive connections waiting
    /// for their next request close then, as Pingora's own wait would.
    closed: AtomicBool,
    closing: Notify,
}

impl<A> Guarded<A> {
    pub fn new(inner: A, live: Arc<Instance>) -> Self {
        Guarded {
            inner: Arc::new(inner),
            live,
            listeners: Vec::new(),
            other: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
        }
    }

    /// Declares a listener the service accepts on (as plain TCP); `tls` handshakes its
    /// connections inside the guard.
    pub fn listen(&mut self, addr: SocketAddr, tls: Option<TlsAcceptor>) {
        self.listeners.push(Listener {
            addr,
            open: AtomicUsize::new(0),
            tls,
        });
    }

    /// The listener that accepted a connection on `local`: the exact address, else a listener
    /// on the unspecified address (0.0.0.0 or ::) with the same port.
    fn listener(&self, local: Option<SocketAddr>) -> Option<&Listener> {
        let local = local?;
        let exact = self.listeners.iter().find(|l| l.addr == local);
        exact.or_else(|| {
            self.listeners
                .iter()
                .find(|l| l.addr.ip().is_unspecified() && l.addr.port() == local.port())
        })
    }
}

/// Counts one open connection until dropped.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

fn conn_limits(l: &Limits) -> ConnLimits {
    ConnLimits {
        header_timeout: Duration::from_secs(l.request_header_timeout_seconds),
        keepalive: Duration::from_secs(l.keepalive_timeout_seconds),
        header_bytes: l.max_request_header_bytes,
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (limits, max) = {
            let snap = self.live.snapshot();
            let l = &snap.config.limits;
            (conn_limits(l), l.max_connections)
        };
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet().copied()));
        let listener = self.listener(local);
        let counter = listener.map_or(&self.other, |l| &l.open);
        let open = counter.fetch_add(1, Relaxed) + 1;
        let _open = Open(counter);
        if open > max {
            refusals::refuse(
                "max_connections",
                format_args!("connection refused: {open} open on this listener, limits.max_connections is {max}"),
            );
            return None;
        }
        let stream = match listener.and_then(|l| l.tls.as_ref()) {
            None => stream,
            Some(tls) => {
                // Boxed: the handshake's state is large and must not stay in this future's
                // allocation for the whole life of the connection.
                let handshake = Box::pin(tls.handshake(stream));
                match tokio::time::timeout(limits.header_timeout, handshake).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        log::debug!("TLS handshake failed: {e}");
                        return None;
                    }
                    Err(_) => {
                        refusals::refuse(
                            "tls_handshake_timeout",
                            format_args!(
                                "connection closed: TLS handshake not complete within {}s",
                                limits.header_timeout.as_secs()
                            ),
                        );
                        return None;
                    }
                }
            }
        };
        let signals = Arc::new(Signals::default());
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            let watch = Watch::http2(limits, Instant::now());
            let stream = Box::new(Watched::new(stream, watch, signals));
            // Pingora's own HTTP/2 loop; its `h2_idle_timeout` closes a connection left idle.
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let watch = Watch::http1(limits, Instant::now());
        let stream = Box::new(Watched::new(stream, watch, signals.clone()));
        CONN.scope(
            signals.clone(),
            self.serve_http1(stream, &signals, limits, shutdown),
        )
        .await;
        None
    }

    async fn cleanup(&self) {
        self.closed.store(true, Relaxed);
        self.closing.notify_waiters();
        self.inner.http_cleanup().await
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Guarded<A> {
    /// Pingora's HTTP/1 keep-alive loop (as in its `ServerApp` impl for HTTP apps), plus the
    /// signal to the stream that a request is over, so the next byte starts a new header clock;
    /// each request's header is read before its Pingora session exists.
    async fn serve_http1(
        &self,
        stream: Stream,
        signals: &Signals,
        limits: ConnLimits,
        shutdown: &ShutdownWatch,
    ) {
        let Some(stream) = self.next_request(stream).await else {
            return;
        };
        let mut reused = self.first_request(stream, limits, shutdown).await;
        while let Some((stream, settings)) = reused.map(|r| r.consume()) {
            signals.request_over();
            let Some(stream) = self.next_request(stream).await else {
                return;
            };
            reused = self.next_session(stream, settings, shutdown).await;
        }
    }

    /// The first request's session, set up as Pingora's own loop does, handed to the app. Built
    /// outside `serve_http1`: a session (680 bytes) held in its state would stay in every
    /// connection's task for the connection's life, idle or not.
    fn first_request<'a>(
        &'a self,
        stream: Stream,
        limits: ConnLimits,
        shutdown: &'a ShutdownWatch,
    ) -> impl Future<Output = Option<ReusedHttpStream>> + Send + 'a {
        let mut session = ServerSession::new_http1(stream);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            // Pingora's own idle bound, a backstop to the stream's.
            session.set_keepalive(Some(limits.keepalive.as_secs()));
        }
        let request_limit = self
            .inner
            .server_options()
            .and_then(|o| o.keepalive_request_limit);
        session.set_keepalive_reuses_remaining(request_limit);
        self.inner.process_new_http(session, shutdown)
    }

    /// A later request's session, with what the previous one carried over.
    fn next_session<'a>(
        &'a self,
        stream: Stream,
        settings: Option<HttpPersistentSettings>,
        shutdown: &'a ShutdownWatch,
    ) -> impl Future<Output = Option<ReusedHttpStream>> + Send + 'a {
        let mut session = ServerSession::new_http1(stream);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
        self.inner.process_new_http(session, shutdown)
    }

    /// Waits until the next request's header is in (`Watched::next_request`), holding only the
    /// stream and the header's bytes: Pingora would wait inside a new session with its header
    /// buffer and its proxy task allocated (nginx, too, frees its buffers while a connection
    /// waits). None when the connection ends before any byte, or the app is cleaned up while it
    /// waits.
    async fn next_request(&self, stream: Stream) -> Option<Stream> {
        if !stream.as_any().is::<Watched>() {
            return Some(stream);
        }
        let mut watched = stream.into_any().downcast::<Watched>().ok()?;
        let closing = self.closing.notified();
        if self.closed.load(Relaxed) {
            return None;
        }
        tokio::select! {
            biased;
            next = watched.next_request() => next.then_some(watched as Stream),
            _ = closing => None,
        }
    }
}
