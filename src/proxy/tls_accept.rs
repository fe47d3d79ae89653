//! The TLS side of a listener: the acceptor built from the listener's certificate and key, and
//! the server handshake. Listeners are added to Pingora as plain TCP so that the connection
//! guard counts a TLS connection from accept and bounds its handshake (SPEC §3.7); Pingora would
//! otherwise handshake before any app code runs, uncounted, with 60 s to finish.
//!
//! The settings are Pingora's own `TlsSettings::intermediate` + `enable_h2`: Mozilla's
//! intermediate profile, HTTP/2 preferred by ALPN, HTTP/1.1 allowed.

use std::pin::Pin;
use std::task::{Context, Poll};

use pingora::protocols::Stream;
use pingora::tls::ssl::{
    select_next_proto, AlpnError, SslAcceptor, SslFiletype, SslMethod, SslRef,
};
use tokio::io::{AsyncRead, ReadBuf};

use super::conn::delegate::delegate_io_but_read;

/// ALPN protocols tether offers, most preferred first, in wire format.
const ALPN_H2_H1: &[u8] = b"\x02h2\x08http/1.1";

/// Why a listener's TLS acceptor could not be built; names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS key {path}: {source}")]
    Key {
        path: String,
        source: pingora::tls::error::ErrorStack,
    },
    #[error("cannot read TLS certificate chain {path}: {source}")]
    Cert {
        path: String,
        source: pingora::tls::error::ErrorStack,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(pingora::tls::error::ErrorStack),
}

/// Accepts TLS connections for one listener.
pub struct TlsAcceptor {
    acceptor: SslAcceptor,
}

impl TlsAcceptor {
    /// An acceptor serving the PEM certificate chain at `cert_path` with the key at `key_path`.
    pub fn from_files(cert_path: &str, key_path: &str) -> Result<Self, TlsError> {
        let mut b =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(TlsError::Setup)?;
        b.set_private_key_file(key_path, SslFiletype::PEM)
            .map_err(|source| TlsError::Key {
                path: key_path.to_string(),
                source,
            })?;
        b.set_certificate_chain_file(cert_path)
            .map_err(|source| TlsError::Cert {
                path: cert_path.to_string(),
                source,
            })?;
        b.set_alpn_select_callback(prefer_h2);
        Ok(TlsAcceptor {
            acceptor: b.build(),
        })
    }

    /// Runs the server handshake on an accepted TCP stream. The caller bounds it in time.
    pub async fn handshake(&self, tcp: Stream) -> pingora::Result<Stream> {
        let tls = pingora::protocols::tls::server::handshake(&self.acceptor, Tcp(tcp)).await?;
        Ok(Box::new(tls))
    }
}

/// HTTP/2 when the client offers it, else HTTP/1.1; no ALPN answer for anything else (the
/// client then speaks HTTP/1.1), as Pingora's `enable_h2`.
fn prefer_h2<'a>(_: &mut SslRef, offered: &'a [u8]) -> Result<&'a [u8], AlpnError> {
    select_next_proto(ALPN_H2_H1, offered).ok_or(AlpnError::NOACK)
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
