//! The server handshake of a TLS listener, run by the connection guard. Listeners are added to
//! Pingora as plain TCP so that the guard counts a TLS connection from accept and bounds its
//! handshake (SPEC §3.7); Pingora would otherwise handshake before any app code runs, uncounted,
//! with 60 s to finish. What the handshake presents (the certificate slot, the SNI choice, ALPN)
//! is `tls::acceptor`'s.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pingora::protocols::Stream;
use pingora::tls::ssl::SslAcceptor;
use tokio::io::{AsyncRead, ReadBuf};

use super::conn::delegate::delegate_io_but_read;
use crate::tls::slot::CertSlot;

/// Why a listener's TLS acceptor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] pingora::tls::error::ErrorStack),
}

/// Accepts TLS connections for one listener.
pub struct TlsAcceptor {
    acceptor: SslAcceptor,
}

impl TlsAcceptor {
    /// An acceptor for the listener at `address` serving what its certificate slot holds.
    pub fn new(address: String, slot: Arc<CertSlot>) -> Result<Self, TlsError> {
        Ok(TlsAcceptor {
            acceptor: crate::tls::acceptor::build(address, slot)?,
        })
    }

    /// Runs the server handshake on an accepted TCP stream. The caller bounds it in time.
    pub async fn handshake(&self, tcp: Stream) -> pingora::Result<Stream> {
        let tls = pingora::protocols::tls::server::handshake(&self.acceptor, Tcp(tcp)).await?;
        Ok(Box::new(tls))
    }
}

/// The accepted TCP stream as the TLS layer's transport: every call goes to the stream inside.
#[derive(Debug)]
struct Tcp(Stream);

impl AsyncRead for Tcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

delegate_io_but_read!(Tcp, 0);
