//! [`Coalesce`]: small writes of a response gathered into one send, in a buffer that exists
//! only until the response is flushed.
//!
//! Pingora writes a response's header and its body separately and flushes at the end; its L4
//! write buffer (1460 bytes, an MSS) turns them into one send, but is held for the whole life
//! of the connection, idle or not. tether's listeners have none (`server::listener_config`):
//! this buffer does the same coalescing and is freed at every flush, so a kept-alive connection
//! waiting for its next request holds no write buffer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pingora::protocols::Stream;

/// What Pingora's L4 write buffer holds (`DEFAULT_L4_WRITE_BUFFER_SIZE`): one MSS. A write at
/// least this large goes straight to the stream.
const CAPACITY: usize = 1460;

/// Bytes accepted and not yet sent; no allocation while empty after a flush.
#[derive(Debug, Default)]
pub(super) struct Coalesce {
    buf: Vec<u8>,
}

impl Coalesce {
    /// Writes `data` to the buffer when it fits; otherwise sends the buffer, then writes `data`
    /// straight to `inner` if it is large. Returns how many bytes of `data` were taken.
    pub fn poll_write(
        &mut self,
        inner: &mut Stream,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() + data.len() > CAPACITY {
            ready!(self.poll_send(inner, cx))?;
        }
        if data.len() >= CAPACITY {
            return Pin::new(&mut **inner).poll_write(cx, data);
        }
        self.take(data);
        Poll::Ready(Ok(data.len()))
    }

    /// [`Coalesce::poll_write`] for several slices: all buffered when they fit together.
    pub fn poll_write_vectored(
        &mut self,
        inner: &mut Stream,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.buf.len() + total > CAPACITY {
            ready!(self.poll_send(inner, cx))?;
        }
        if total >= CAPACITY {
            return Pin::new(&mut **inner).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            self.take(b);
        }
        Poll::Ready(Ok(total))
    }

    /// Sends what is buffered, frees the buffer, then flushes `inner`.
    pub fn poll_flush(&mut self, inner: &mut Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(inner, cx))?;
        self.buf = Vec::new();
        Pin::new(&mut **inner).poll_flush(cx)
    }

    /// Copies `data` in, allocating the buffer at its full size on first use.
    fn take(&mut self, data: &[u8]) {
        if self.buf.capacity() == 0 && !data.is_empty() {
            self.buf.reserve_exact(CAPACITY);
        }
        self.buf.extend_from_slice(data);
    }

    /// Sends every buffered byte to `inner`, keeping what is left across a pending write.
    fn poll_send(&mut self, inner: &mut Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() {
            let n = ready!(Pin::new(&mut **inner).poll_write(cx, &self.buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.buf.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}
