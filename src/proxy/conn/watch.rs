//! The decision core of the connection guard: where a connection is in its request cycle, the
//! deadline its reads run against and how many header bytes they may still take. Synchronous and
//! clock-free (the caller passes `now`), so it is tested without a socket.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::answer::{OwnAnswer, StatusLine};

/// The client's HTTP/2 connection preface (RFC 9113 §3.4) is this many bytes.
const H2_PREFACE_LEN: usize = 24;

/// The limits one connection runs under, read from the config when it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// `limits.request_header_timeout_seconds`: a whole header (or a TLS handshake) must fit.
    pub header_timeout: Duration,
    /// `limits.keepalive_timeout_seconds`: how long a kept-alive connection may wait idle.
    pub keepalive: Duration,
    /// `limits.max_request_header_bytes`: the most bytes read before a header is complete.
    pub header_bytes: usize,
}

/// Where a connection is, as its reads see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A new HTTP/1 connection, nothing read yet: its first header is due by the deadline.
    Fresh,
    /// Between two requests of a kept-alive HTTP/1 connection.
    Idle,
    /// Inside a request header: from its first byte, the header timeout runs.
    Header,
    /// The header is parsed; body and response are not timed here.
    Body,
    /// A new HTTP/2 connection before the client's preface is in.
    Preface,
    /// HTTP/2 after the preface: Pingora's `h2_idle_timeout` closes it once idle.
    Free,
}

/// Why a connection is ended before its request is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// More header bytes than `max_request_header_bytes` and still no complete header: 431.
    TooLarge,
    /// A header started and did not complete in time: 408.
    HeaderTimeout,
    /// A new connection sent nothing (or not its whole HTTP/2 preface) in time: closed.
    Silent,
    /// A kept-alive connection stayed idle past `keepalive_timeout_seconds`: closed.
    Idle,
}

impl Cut {
    /// The response written before closing, if any: a client that sent part of a request is
    /// told why; one that sent nothing is just closed.
    pub fn response(self) -> Option<&'static [u8]> {
        match self {
            Cut::TooLarge => Some(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\nrequest header fields too large\n"),
            Cut::HeaderTimeout => Some(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            Cut::Silent | Cut::Idle => None,
        }
    }

    /// The `reason` label of `tether_refused_requests_total`; an idle keep-alive is not a refusal.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Cut::TooLarge => Some("header_too_large"),
            Cut::HeaderTimeout | Cut::Silent => Some("header_timeout"),
            Cut::Idle => None,
        }
    }
}

/// One connection's clock and header byte count.
#[derive(Debug, Clone)]
pub struct Watch {
    limits: ConnLimits,
    phase: Phase,
    deadline: Instant,
    read: usize,
    /// The status line of a response written before the current request's header was handed
    /// over: Pingora's own answer.
    answer: StatusLine,
}

impl Watch {
    /// An HTTP/1 connection ready at `now` (accepted, or its TLS handshake done).
    pub fn http1(limits: ConnLimits, now: Instant) -> Self {
        Watch {
            limits,
            phase: Phase::Fresh,
            deadline: now + limits.header_timeout,
            read: 0,
            answer: StatusLine::default(),
        }
    }

    /// An HTTP/2 connection whose TLS handshake ended at `now`.
    pub fn http2(limits: ConnLimits, now: Instant) -> Self {
        Watch {
            phase: Phase::Preface,
            ..Self::http1(limits, now)
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The limits this connection runs under.
    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// The instant the current phase must end by; `None` when nothing is timed.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Fresh | Phase::Idle | Phase::Header | Phase::Preface => Some(self.deadline),
            Phase::Body | Phase::Free => None,
        }
    }

    /// How many more bytes a read may take now; `None` = no bound. `Some(0)` means the header
    /// is over the limit and the connection must be cut with [`Cut::TooLarge`].
    pub fn allowance(&self) -> Option<usize> {
        match self.phase {
            Phase::Fresh | Phase::Idle | Phase::Header => {
                Some(self.limits.header_bytes.saturating_sub(self.read))
            }
            _ => None,
        }
    }

    /// Whether reads in this phase must be counted with [`Watch::on_read`].
    pub fn counts_reads(&self) -> bool {
        !matches!(self.phase, Phase::Body | Phase::Free)
    }

    /// Accounts `n` bytes just read; `now` is asked for only when a new header starts.
    pub fn on_read(&mut self, n: usize, now: impl FnOnce() -> Instant) {
        if n == 0 {
            return;
        }
        match self.phase {
            // A new connection's first header is due by the deadline set at accept.
            Phase::Fresh => self.phase = Phase::Header,
            Phase::Idle => {
                self.phase = Phase::Header;
                self.deadline = now() + self.limits.header_timeout;
            }
            Phase::Preface if self.read + n >= H2_PREFACE_LEN => self.phase = Phase::Free,
            _ => {}
        }
        self.read = self.read.saturating_add(n);
    }

    /// Reads bytes written to the client while the current HTTP/1 request's header has not been
    /// handed to tether: only Pingora itself answers then (`conn::answer`). Returns its answer
    /// once per request, when the status is in; nothing is looked at once the header is done.
    pub fn on_write(&mut self, written: &[u8]) -> Option<OwnAnswer> {
        if !self.before_header() {
            return None;
        }
        self.answer.feed(written)
    }

    /// Whether an HTTP/1 request's header is still to be handed to tether (or not begun).
    /// HTTP/2 writes its SETTINGS before the client's preface is in: never "before a header".
    pub fn before_header(&self) -> bool {
        matches!(self.phase, Phase::Fresh | Phase::Idle | Phase::Header)
    }

    /// The request header was parsed (Pingora's `early_request_filter` ran).
    pub fn header_done(&mut self) {
        if matches!(self.phase, Phase::Fresh | Phase::Idle | Phase::Header) {
            self.phase = Phase::Body;
        }
    }

    /// The request is over and the connection is kept alive; the next byte starts a header.
    pub fn request_over(&mut self, now: Instant) {
        self.phase = Phase::Idle;
        self.read = 0;
        self.deadline = now + self.limits.keepalive;
        self.answer = StatusLine::default();
    }

    /// Why the connection is cut when its deadline passes in the current phase.
    pub fn expired(&self) -> Cut {
        match self.phase {
            Phase::Idle => Cut::Idle,
            Phase::Header => Cut::HeaderTimeout,
            _ => Cut::Silent,
        }
    }
}

/// What the proxy tells a connection's reads about its requests: a mailbox the hooks write and
/// the stream wrapper empties at its next read, without a lock; and the other way, whether the
/// current request line held a bare CR.
#[derive(Debug, Default)]
pub struct Signals(AtomicU8, AtomicBool);

const NONE: u8 = 0;
const HEADER_DONE: u8 = 1;
const REQUEST_OVER: u8 = 2;

impl Signals {
    /// The current request's header is parsed.
    pub fn header_done(&self) {
        self.0.store(HEADER_DONE, Relaxed);
    }

    /// The current request is finished and the connection is being reused.
    pub fn request_over(&self) {
        self.0.store(REQUEST_OVER, Relaxed);
    }

    /// The stream saw a bare CR in the current request line.
    pub fn bare_cr(&self) {
        self.1.store(true, Relaxed);
    }

    /// Whether the stream saw a bare CR in the current request line; clears it.
    pub fn take_bare_cr(&self) -> bool {
        self.1.swap(false, Relaxed)
    }

    /// Applies the latest signal, if any, to `watch`.
    pub fn apply(&self, watch: &mut Watch, now: impl FnOnce() -> Instant) {
        if self.0.load(Relaxed) == NONE {
            return;
        }
        match self.0.swap(NONE, Relaxed) {
            HEADER_DONE => watch.header_done(),
            REQUEST_OVER => watch.request_over(now()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        header_timeout: Duration::from_secs(10),
        keepalive: Duration::from_secs(60),
        header_bytes: 100,
    };

    #[test]
    fn first_header_is_due_from_accept_and_counted() {
        let t0 = Instant::now();
        let mut w = Watch::http1(LIMITS, t0);
        assert_eq!(w.deadline(), Some(t0 + LIMITS.header_timeout));
        assert_eq!(w.expired(), Cut::Silent);
        w.on_read(40, || {
            unreachable!("the first header keeps the accept deadline")
        });
        assert_eq!(w.phase(), Phase::Header);
        assert_eq!(w.allowance(), Some(60));
        assert_eq!(w.expired(), Cut::HeaderTimeout);
        w.on_read(60, Instant::now);
        assert_eq!(w.allowance(), Some(0));
        w.header_done();
        assert_eq!((w.deadline(), w.allowance()), (None, None));
    }

    #[test]
    fn kept_alive_request_gets_a_fresh_budget_and_deadline_at_its_first_byte() {
        let t0 = Instant::now();
        let mut w = Watch::http1(LIMITS, t0);
        w.on_read(100, || t0);
        w.header_done();
        let over = t0 + Duration::from_secs(1);
        w.request_over(over);
        assert_eq!(w.deadline(), Some(over + LIMITS.keepalive));
        assert_eq!(w.expired(), Cut::Idle);
        assert_eq!(w.allowance(), Some(100));
        let first = over + Duration::from_secs(30);
        w.on_read(1, || first);
        assert_eq!(w.phase(), Phase::Header);
        assert_eq!(w.deadline(), Some(first + LIMITS.header_timeout));
        assert_eq!(w.expired(), Cut::HeaderTimeout);
    }

    #[test]
    fn http2_is_timed_until_its_preface_is_in() {
        let t0 = Instant::now();
        let mut w = Watch::http2(LIMITS, t0);
        assert_eq!(w.allowance(), None);
        w.on_read(23, || t0);
        assert_eq!(w.phase(), Phase::Preface);
        w.on_read(1, || t0);
        assert_eq!((w.phase(), w.deadline()), (Phase::Free, None));
        w.header_done();
        assert_eq!(
            w.phase(),
            Phase::Free,
            "h2 streams do not touch the connection"
        );
    }

    #[test]
    fn only_answers_written_before_the_header_is_handed_over_are_read() {
        let t0 = Instant::now();
        let bad = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        let mut w = Watch::http1(LIMITS, t0);
        w.on_read(10, || t0);
        assert_eq!(w.on_write(bad), Some(OwnAnswer::Malformed));
        assert_eq!(w.on_write(bad), None, "once per request");

        let mut w = Watch::http1(LIMITS, t0);
        w.on_read(10, || t0);
        w.header_done();
        assert_eq!(w.on_write(bad), None, "tether's own response");
        w.request_over(t0);
        assert_eq!(
            w.on_write(b"HTTP/1.1 405 Method"),
            Some(OwnAnswer::ConnectMethod),
            "a pipelined request answered before any read"
        );

        let mut h2 = Watch::http2(LIMITS, t0);
        assert_eq!(h2.on_write(b"\0\0\x06\x04\0\0\0\0\0\0\0\0"), None);
    }

    #[test]
    fn the_latest_signal_wins() {
        let t0 = Instant::now();
        let s = Signals::default();
        let mut w = Watch::http1(LIMITS, t0);
        w.on_read(5, || t0);
        s.header_done();
        s.request_over();
        s.apply(&mut w, || t0);
        assert_eq!(w.phase(), Phase::Idle);
        s.apply(&mut w, || unreachable!("a signal is applied once"));
        s.header_done();
        s.apply(&mut w, || t0);
        assert_eq!(w.phase(), Phase::Body);
    }
}
