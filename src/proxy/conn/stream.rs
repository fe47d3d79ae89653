//! [`Watched`]: the client stream as Pingora reads it, with the header deadline and byte budget
//! of [`Watch`] enforced at every read, and Pingora's own refusals seen as they are written.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::coalesce::Coalesce;
use super::delegate::delegate_io_but_read_write;
use super::line::RequestLine;
use super::watch::{Cut, Phase, Signals, Watch};
use crate::telemetry::refusals;

/// How long a cut connection may take to receive its 408/431 and stop sending, and how much
/// of what it still sends is read and dropped meanwhile: closing a socket with unread bytes
/// sends a reset, which can destroy the response before the client reads it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// The most bytes read at once while a request header comes in: Pingora's first header read is
/// as large (`INIT_HEADER_BUF_SIZE`), so a usual header still takes one read.
const FIRST_READ: usize = 4096;

/// A client stream whose reads obey a [`Watch`]: past the deadline, or past the header byte
/// budget, a read fails (after a 408/431 where the client sent part of a request) instead of
/// waiting or buffering more. Reads of a request body or of HTTP/2 frames pass straight through.
#[derive(Debug)]
pub struct Watched {
    inner: Stream,
    watch: Watch,
    signals: Arc<Signals>,
    /// Armed at or before the watch's deadline; re-armed only when it fires early, so a
    /// request costs no timer operation in the common case.
    timer: Pin<Box<Sleep>>,
    cut: Option<Cutting>,
    /// The scan of the current request line for a bare CR.
    line: RequestLine,
    /// The first bytes of the next request, read by [`Watched::next_request`] (and already
    /// watched), not yet handed to Pingora. Empty, without an allocation, otherwise.
    early: Vec<u8>,
    /// Response bytes not yet sent: one send per response, no buffer while idle.
    out: Coalesce,
}

/// A connection being cut (logged and counted once): its response, if any, is written, then
/// input is drained until `until`.
#[derive(Debug)]
struct Cutting {
    why: Cut,
    written: usize,
    flushed: bool,
    shut: bool,
    drained: usize,
    until: Instant,
}

impl Watched {
    /// Wraps `inner`; `signals` is where the proxy's hooks report header and request ends.
    pub fn new(inner: Stream, watch: Watch, signals: Arc<Signals>) -> Self {
        let first = watch.deadline().unwrap_or_else(|| Instant::now() + LINGER);
        Watched {
            inner,
            watch,
            signals,
            timer: Box::pin(tokio::time::sleep_until(first.into())),
            cut: None,
            line: RequestLine::default(),
            early: Vec::new(),
            out: Coalesce::default(),
        }
    }

    /// True once `deadline` has passed; otherwise the timer is armed to wake this task by then.
    fn passed(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let at = tokio::time::Instant::from_std(deadline);
        if self.timer.deadline() > at {
            self.timer.as_mut().reset(at);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            // Tokio rounds a timer up to the millisecond; never spin on the remainder.
            if Instant::now() + Duration::from_millis(1) >= deadline {
                return true;
            }
            self.timer.as_mut().reset(at);
        }
        false
    }

    /// The client's address, for a log line.
    fn peer(&self) -> String {
        let peer = self
            .inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned());
        peer.map(|p| p.to_string()).unwrap_or_default()
    }

    /// Starts cutting the connection for `why`: logged, counted, then answered if it earned an
    /// answer. Returns what the read that found it reports.
    fn start_cut(&mut self, cx: &mut Context<'_>, why: Cut) -> Poll<io::Result<()>> {
        let peer = self.peer();
        let limits = self.watch.limits();
        match (why, why.reason()) {
            (Cut::TooLarge, Some(reason)) => refusals::refuse(
                reason,
                format_args!("431 from {peer}: request header over limits.max_request_header_bytes ({}) and not complete", limits.header_bytes),
            ),
            (_, Some(reason)) => refusals::refuse(
                reason,
                format_args!("connection from {peer} closed: request header not complete within {}s", limits.header_timeout.as_secs()),
            ),
            (_, None) => log::debug!(
                "kept-alive connection from {peer} idle for {}s, closed",
                limits.keepalive.as_secs()
            ),
        }
        let until = Instant::now() + LINGER;
        self.timer.as_mut().reset(until.into());
        self.cut = Some(Cutting {
            why,
            written: 0,
            flushed: false,
            shut: false,
            drained: 0,
            until,
        });
        self.poll_cut(cx)
    }

    /// Writes the response, closes the write side and drains input until the client stops or
    /// the linger time is up; then fails the read so Pingora drops the connection.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(cut) = self.cut.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let Some(response) = cut.why.response() else {
            // End of stream: Pingora closes quietly when no byte of a request was read.
            return Poll::Ready(Ok(()));
        };
        let failed = |why: Cut| {
            let what = match why {
                Cut::TooLarge => "request header over limits.max_request_header_bytes",
                _ => "request header not complete within limits.request_header_timeout_seconds",
            };
            // Pingora logs the failed read as an error of its own: marked as a duplicate.
            let what = format!("{what}{}", refusals::LOGGED);
            Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, what)))
        };
        let why = cut.why;
        let until = cut.until;
        if self.timer.as_mut().poll(cx).is_ready() && Instant::now() >= until {
            return failed(why);
        }
        let mut inner = Pin::new(&mut *self.inner);
        while cut.written < response.len() {
            match ready!(inner.as_mut().poll_write(cx, &response[cut.written..])) {
                Ok(n) if n > 0 => cut.written += n,
                _ => return failed(why),
            }
        }
        if !cut.flushed {
            if ready!(inner.as_mut().poll_flush(cx)).is_err() {
                return failed(why);
            }
            cut.flushed = true;
        }
        if !cut.shut {
            // Errors are fine here: the client may have gone already.
            let _ = ready!(inner.as_mut().poll_shutdown(cx));
            cut.shut = true;
        }
        let mut scratch = [0u8; 4096];
        loop {
            let mut rb = ReadBuf::new(&mut scratch);
            match ready!(inner.as_mut().poll_read(cx, &mut rb)) {
                Ok(()) if !rb.filled().is_empty() => {
                    cut.drained += rb.filled().len();
                    if cut.drained >= LINGER_BYTES {
                        return failed(why);
                    }
                }
                _ => return failed(why),
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.drain(..n);
            if this.early.is_empty() {
                this.early = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        if this.cut.is_some() {
            return this.poll_cut(cx);
        }
        this.signals.apply(&mut this.watch, Instant::now);
        if let Some(deadline) = this.watch.deadline() {
            if this.passed(cx, deadline) {
                let why = this.watch.expired();
                return this.start_cut(cx, why);
            }
        }
        match this.watch.allowance() {
            Some(0) => return this.start_cut(cx, Cut::TooLarge),
            Some(max) if max < buf.remaining() => {
                // Read no further than the budget: the bytes of an unfinished header are all
                // the memory a client can make tether hold for it.
                let mut part = ReadBuf::new(buf.initialize_unfilled_to(max));
                ready!(Pin::new(&mut *this.inner).poll_read(cx, &mut part))?;
                let n = part.filled().len();
                this.scan_line(part.filled());
                buf.advance(n);
                this.watch.on_read(n, Instant::now);
                return Poll::Ready(Ok(()));
            }
            _ => {}
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut *this.inner).poll_read(cx, buf))?;
        if this.watch.counts_reads() {
            this.scan_line(&buf.filled()[before..]);
            this.watch
                .on_read(buf.filled().len() - before, Instant::now);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(this.out.poll_write(&mut this.inner, cx, buf))?;
        if this.before_header() {
            this.on_written(&buf[..n]);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(this.out.poll_write_vectored(&mut this.inner, cx, bufs))?;
        if this.before_header() {
            let mut left = n;
            for b in bufs {
                let part = b.len().min(left);
                this.on_written(&b[..part]);
                left -= part;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.out.poll_flush(&mut this.inner, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.out.poll_flush(&mut this.inner, cx))?;
        Pin::new(&mut *this.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

delegate_io_but_read_write!(Watched, inner);

impl Watched {
    /// Scans header bytes just read (before [`Watch::on_read`] accounts them) for a bare CR in
    /// the request line, and tells the proxy. A request whose bytes were read with the previous
    /// request's body (pipelined) is not scanned.
    fn scan_line(&mut self, read: &[u8]) {
        match self.watch.phase() {
            Phase::Idle if !read.is_empty() => self.line = RequestLine::default(),
            Phase::Fresh | Phase::Idle | Phase::Header => {}
            _ => return,
        }
        if self.line.feed(read) {
            self.signals.bare_cr();
        }
    }

    /// Whether the current HTTP/1 request's header has not been handed to tether yet, so a
    /// write is Pingora answering by itself. After the header, one atomic load per write.
    fn before_header(&mut self) -> bool {
        self.signals.apply(&mut self.watch, Instant::now);
        self.watch.before_header()
    }

    /// Reads bytes written before the header was handed over for Pingora's own answer, and logs
    /// and counts it as a refusal once its status is in (`conn::answer`).
    fn on_written(&mut self, written: &[u8]) {
        let Some(answer) = self.watch.on_write(written) else {
            return;
        };
        let (peer, status, what) = (self.peer(), answer.status(), answer.what());
        refusals::refuse(
            answer.reason(),
            format_args!("{status} from {peer}: {what}"),
        );
    }

    /// Reads the next request's header, holding only its bytes meanwhile (the reads go to the
    /// stack): so a connection that waits for a request, or sends its header slowly, holds no
    /// Pingora session, no header buffer and no proxy task state. Pingora's next reads return
    /// these bytes first. True once the header is complete, or the stream ended or failed after
    /// some bytes (Pingora then meets the same end and answers as it always does); false when
    /// it ended before any byte. The watch applies to every read, deadlines and budget included.
    pub async fn next_request(&mut self) -> bool {
        poll_fn(|cx| loop {
            let mut stack = [MaybeUninit::<u8>::uninit(); FIRST_READ];
            let mut buf = ReadBuf::uninit(&mut stack);
            let read = ready!(self.read_more(cx, &mut buf));
            let n = buf.filled().len();
            if read.is_err() || n == 0 {
                return Poll::Ready(!self.early.is_empty());
            }
            let from = self.early.len().saturating_sub(2);
            self.early.extend_from_slice(buf.filled());
            if header_ends(&self.early[from..]) {
                return Poll::Ready(true);
            }
        })
        .await
    }

    /// A read from the stream itself, past the bytes already held.
    fn read_more(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let early = std::mem::take(&mut self.early);
        let read = Pin::new(&mut *self).poll_read(cx, buf);
        self.early = early;
        read
    }

    /// Where the connection is in its request cycle.
    pub fn phase(&self) -> Phase {
        self.watch.phase()
    }
}

/// Whether `bytes` hold the empty line that ends an HTTP/1 header: a line feed followed by
/// another, with or without a carriage return between (the parser accepts bare LF lines).
fn header_ends(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| {
        w[0] == b'\n' && (w[1] == b'\n' || (w[1] == b'\r' && bytes.get(i + 2) == Some(&b'\n')))
    })
}

// The wrapper must stay a valid Pingora stream.
const _: fn() = || {
    fn is_io<T: pingora::protocols::IO>() {}
    is_io::<Watched>();
};

#[cfg(test)]
mod tests {
    use super::header_ends;

    #[test]
    fn a_header_ends_at_its_empty_line_with_or_without_carriage_returns() {
        assert!(header_ends(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(header_ends(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(header_ends(b"GET / HTTP/1.1\r\nHost: a\n\r\n"));
        assert!(header_ends(b"\r\n\r\nbody"));
        assert!(!header_ends(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!header_ends(b"GET / HTTP/1.1\r\nHost: a\r\n\r"));
        assert!(!header_ends(b"\r\r\n"));
        assert!(!header_ends(b""));
    }
}
