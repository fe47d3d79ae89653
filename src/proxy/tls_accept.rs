//! The TLS side of a listener: the acceptor, which presents the live certificate for the
//! client's SNI (`listener_certs`, re-read at every reload), and the server handshake. Listeners are added to Pingora as plain TCP so that the connection
//! guard counts a TLS connection from accept and bounds its handshake (SPEC §3.7); Pingora would
//! otherwise handshake before any app code runs, uncounted, with 60 s to finish.
//!
//! The settings are Pingora's own `TlsSettings::intermediate` + `enable_h2`: Mozilla's
//! intermediate profile, HTTP/2 preferred by ALPN, HTTP/1.1 allowed.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pingora::protocols::Stream;
use pingora::tls::ssl::{
    select_next_proto, AlpnError, NameType, SniError, SslAcceptor, SslAcceptorBuilder, SslMethod,
    SslRef,
};
use tokio::io::{AsyncRead, ReadBuf};

use super::conn::delegate::delegate_io_but_read;
use crate::config::CertKey;
use crate::instance::Instance;
use crate::tls::listener_certs::ListenerCerts;

/// ALPN protocols tether offers, most preferred first, in wire format.
const ALPN_H2_H1: &[u8] = b"\x02h2\x08http/1.1";

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
    /// An acceptor for the listener at `address` that serves, at each handshake, the certificate
    /// the live snapshot holds for it and the client's SNI (`listener_certs`; `started` is what
    /// it was started with). Its own context carries no certificate.
    pub fn live(
        live: Arc<Instance>,
        address: String,
        started: Arc<ListenerCerts>,
    ) -> Result<Self, TlsError> {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
        serve_live_certificates(&mut b, live, address, started);
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

/// Puts `c` on the handshake in progress.
fn present(ssl: &mut SslRef, c: &CertKey) -> Result<(), pingora::tls::error::ErrorStack> {
    ssl.set_certificate(&c.chain[0])?;
    ssl.set_private_key(&c.key)?;
    for extra in &c.chain[1..] {
        ssl.add_chain_cert(extra.clone())?;
    }
    Ok(())
}

/// Makes the acceptor being built for the listener at `address` present, at each handshake, the
/// certificate the live snapshot holds for it and the client's SNI. `started` (the certificates
/// it was started with) serves if a reload removed the listener's TLS, which only an upgrade
/// applies. The builder must carry no certificate of its own, or OpenSSL could pick that one.
pub fn serve_live_certificates(
    builder: &mut SslAcceptorBuilder,
    live: Arc<Instance>,
    address: String,
    started: Arc<ListenerCerts>,
) {
    builder.set_servername_callback(move |ssl, _alert| {
        let snap = live.snapshot();
        let certs = snap.listener_certs(&address).unwrap_or(&started);
        let chosen = certs.select(ssl.servername(NameType::HOST_NAME));
        present(ssl, chosen).map_err(|e| {
            log::error!("listener {address}: cannot present its certificate: {e}");
            SniError::ALERT_FATAL
        })
    });
}
