//! What one client may *hold* (SPEC §3.7 "Holding is denial too"): a request body that stops
//! arriving, a response the client stops taking, and HTTP/2 streams beyond
//! `limits.max_concurrent_streams`.
//!
//! Where each bound lives, and why there:
//! - HTTP/1 body and every send: Pingora's own per-read and per-write timeouts on the downstream
//!   session, set for each request from the live snapshot ([`per_request`]). A timeout fails the
//!   request; [`failure_status`] turns it into 408 (nothing sent yet) or a cut, and the upstream
//!   connection it held is dropped with the request.
//! - HTTP/2 bodies: Pingora 0.9 reads them with no timeout at all (`read_body_bytes`, "TODO:
//!   timeout"). [`Held`] wraps the proxy app, sees every stream as it starts, and races it
//!   against a [`BodyClock`] that `request_body_filter` winds at every chunk ([`body_progress`]).
//!   A stream whose body stalls is dropped whole: h2 resets it (RST_STREAM CANCEL) and the
//!   upstream connection it held closes at once.
//! - Streams per connection: h2's own SETTINGS_MAX_CONCURRENT_STREAMS, asked of [`Held`] for each
//!   new connection, so a reload applies to the next connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorSource, ErrorType};

use crate::config::Limits;
use crate::instance::Instance;
use crate::telemetry::refusals;

tokio::task_local! {
    /// The body clock of the HTTP/2 stream this task serves.
    static STREAM: Arc<BodyClock>;
}

/// Tells the stream being served that `request_body_filter` saw body bytes (or its end); a no-op
/// on HTTP/1, whose body reads Pingora times itself.
pub fn body_progress(end_of_stream: bool) {
    let _ = STREAM.try_with(|clock| clock.progress(Instant::now(), end_of_stream));
}

/// The per-request bounds of an HTTP/1 request or HTTP/2 stream, from the live limits: the
/// wait for each read of the request body and each write of the response.
pub fn per_request(session: &mut ServerSession, limits: &Limits) {
    let body = Duration::from_secs(limits.request_body_timeout_seconds);
    let send = Duration::from_secs(limits.send_timeout_seconds);
    // A no-op on HTTP/2, where `Held` times the body.
    session.set_read_timeout(Some(body));
    session.set_write_timeout(Some(send));
    // A body still unread when the response is done is drained under the same bound.
    session.set_total_drain_timeout(Some(body));
}

/// The status a failed request answers with (0: none, the connection is cut): Pingora's default
/// mapping, except for a client that held the request up: 408 if its request body stalled before
/// any response was sent, a cut once a response started or when it stopped reading (writing an
/// error to a client that does not read would only wait for it once more).
pub fn failure_status(e: &Error, response_started: bool) -> u16 {
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(code), _) => *code,
        (_, ErrorSource::Upstream) => 502,
        (ErrorType::ReadTimedout, ErrorSource::Downstream) if !response_started => 408,
        (
            ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::WriteError
            | ErrorType::ReadError
            | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => 0,
        (_, ErrorSource::Downstream) => 400,
        (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
    }
}

/// The `reason` label a held-up request is counted under, if it was one.
pub fn refusal_reason(e: &Error) -> Option<&'static str> {
    if *e.esource() != ErrorSource::Downstream {
        return None;
    }
    match e.etype() {
        ErrorType::ReadTimedout => Some("body_timeout"),
        ErrorType::WriteTimedout => Some("send_timeout"),
        _ => None,
    }
}

/// The log line of a request a client held up, after its peer: what stalled, for how long,
/// and what the client got.
pub struct HeldUp<'a> {
    /// [`refusal_reason`]'s label.
    pub reason: &'static str,
    /// [`failure_status`]'s answer (0: cut).
    pub code: u16,
    pub limits: Option<&'a Limits>,
}

impl std::fmt::Display for HeldUp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, knob, secs) = match self.reason {
            "send_timeout" => (
                "took no response bytes",
                "send_timeout_seconds",
                self.limits.map(|l| l.send_timeout_seconds),
            ),
            _ => (
                "sent no request body bytes",
                "request_body_timeout_seconds",
                self.limits.map(|l| l.request_body_timeout_seconds),
            ),
        };
        let secs = secs.map_or_else(String::new, |s| format!(" for {s}s"));
        match self.code {
            0 => write!(f, "{what}{secs} (limits.{knob}): connection cut"),
            code => write!(f, "{what}{secs} (limits.{knob}): {code}"),
        }
    }
}

/// The progress of one HTTP/2 request body: when its last bytes came, and whether it is over.
/// Written by the request's own hooks, read by the race in [`Held`]; clock-free for tests.
#[derive(Debug)]
pub struct BodyClock {
    origin: Instant,
    /// Milliseconds after `origin` of the last progress.
    last_ms: AtomicU64,
    done: AtomicBool,
}

impl BodyClock {
    /// A body that starts waiting at `now`; `done` when the request has none.
    pub fn new(now: Instant, done: bool) -> Self {
        BodyClock {
            origin: now,
            last_ms: AtomicU64::new(0),
            done: AtomicBool::new(done),
        }
    }

    /// Body bytes arrived at `now`; `end` when they were the last.
    pub fn progress(&self, now: Instant, end: bool) {
        let ms = now.saturating_duration_since(self.origin).as_millis();
        self.last_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Relaxed);
        if end {
            self.done.store(true, Relaxed);
        }
    }

    /// The whole body is in (or there was none): nothing left to time.
    pub fn done(&self) -> bool {
        self.done.load(Relaxed)
    }

    /// The instant the body stalls unless more arrives, `timeout` after its last progress.
    pub fn deadline(&self, timeout: Duration) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Relaxed)) + timeout
    }

    /// Whether the body is still expected and nothing came for `timeout` up to `now`.
    pub fn stalled(&self, now: Instant, timeout: Duration) -> bool {
        !self.done() && now >= self.deadline(timeout)
    }
}

/// The proxy app with the HTTP/2 bounds: streams per connection from the live limits, and each
/// stream's request body timed. HTTP/1 sessions pass straight through.
pub struct Held<A> {
    inner: Arc<A>,
    live: Arc<Instance>,
}

impl<A> Held<A> {
    pub fn new(inner: A, live: Arc<Instance>) -> Self {
        Held {
            inner: Arc::new(inner),
            live,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for Held<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !session.is_http2() || session.is_body_done() {
            return self.inner.process_new_http(session, shutdown).await;
        }
        let timeout = {
            let snap = self.live.snapshot();
            Duration::from_secs(snap.config.limits.request_body_timeout_seconds)
        };
        // Kept as an address; formatted only if the stream stalls.
        let peer = session.client_addr().cloned();
        let clock = Arc::new(BodyClock::new(Instant::now(), false));
        let serve = STREAM.scope(
            clock.clone(),
            self.inner.process_new_http(session, shutdown),
        );
        tokio::pin!(serve);
        loop {
            if clock.done() {
                return serve.await;
            }
            let at = tokio::time::Instant::from_std(clock.deadline(timeout));
            tokio::select! {
                reused = &mut serve => return reused,
                () = tokio::time::sleep_until(at) => {
                    if clock.stalled(Instant::now(), timeout) {
                        break;
                    }
                }
            }
        }
        // Dropping the request resets the stream and closes the upstream connection it held.
        refusals::refuse(
            "body_timeout",
            format_args!(
                "HTTP/2 stream from {} reset: request body stalled for {}s (limits.request_body_timeout_seconds)",
                peer.map(|p| p.to_string()).unwrap_or_default(),
                timeout.as_secs()
            ),
        );
        None
    }

    fn h2_options(&self) -> Option<H2Options> {
        let mut options = default_h2_options();
        let snap = self.live.snapshot();
        options.max_concurrent_streams(snap.config.limits.max_concurrent_streams);
        Some(options)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn a_body_stalls_a_timeout_after_its_last_bytes() {
        let t0 = Instant::now();
        let clock = BodyClock::new(t0, false);
        assert_eq!(clock.deadline(T), t0 + T);
        assert!(!clock.stalled(t0 + T - Duration::from_millis(1), T));
        assert!(clock.stalled(t0 + T, T));
        clock.progress(t0 + Duration::from_secs(8), false);
        assert!(!clock.stalled(t0 + T, T), "progress winds the clock");
        assert!(clock.stalled(t0 + Duration::from_secs(18), T));
    }

    #[test]
    fn a_finished_body_never_stalls() {
        let t0 = Instant::now();
        let clock = BodyClock::new(t0, false);
        clock.progress(t0, true);
        assert!(clock.done());
        assert!(!clock.stalled(t0 + T * 100, T));
        assert!(!BodyClock::new(t0, true).stalled(t0 + T, T));
    }

    #[test]
    fn a_stalled_body_is_408_until_a_response_started() {
        let read = Error::explain(ErrorType::ReadTimedout, "body").into_down();
        assert_eq!(failure_status(&read, false), 408);
        assert_eq!(failure_status(&read, true), 0);
        assert_eq!(refusal_reason(&read), Some("body_timeout"));
        let write = Error::explain(ErrorType::WriteTimedout, "send").into_down();
        assert_eq!(failure_status(&write, false), 0);
        assert_eq!(refusal_reason(&write), Some("send_timeout"));
        let upstream = Error::explain(ErrorType::ReadTimedout, "origin").into_up();
        assert_eq!(failure_status(&upstream, false), 502);
        assert_eq!(refusal_reason(&upstream), None);
        let header = Error::explain(ErrorType::InvalidHTTPHeader, "x").into_down();
        assert_eq!(failure_status(&header, false), 400);
    }
}
