//! A TLS listener's OpenSSL acceptor: Pingora's own `TlsSettings::intermediate` + `enable_h2`
//! profile (Mozilla's intermediate ciphers, HTTP/2 preferred by ALPN, HTTP/1.1 allowed), with the
//! certificate chosen at each handshake from the listener's [`CertSlot`] by the client's SNI.
//! The handshake itself runs in the proxy's connection guard, counted and timed from accept.

use std::sync::Arc;

use pingora::tls::ssl::{
    select_next_proto, AlpnError, NameType, SniError, SslAcceptor, SslMethod, SslRef,
};

use super::slot::CertSlot;
use crate::config::CertKey;

/// ALPN protocols tether offers, most preferred first, in wire format.
const ALPN_H2_H1: &[u8] = b"\x02h2\x08http/1.1";

/// An acceptor that presents, at each handshake, the certificate `slot` holds for the client's
/// SNI. Its own context carries no certificate, so OpenSSL can only pick the slot's.
pub fn build(
    address: String,
    slot: Arc<CertSlot>,
) -> Result<SslAcceptor, pingora::tls::error::ErrorStack> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    // OpenSSL's server-name callback runs for every ClientHello (with or without SNI) before a
    // certificate is needed.
    b.set_servername_callback(move |ssl, _alert| {
        let certs = slot.current();
        let chosen = certs.select(ssl.servername(NameType::HOST_NAME));
        present(ssl, chosen).map_err(|e| {
            log::error!("listener {address}: cannot present its certificate: {e}");
            SniError::ALERT_FATAL
        })
    });
    b.set_alpn_select_callback(prefer_h2);
    Ok(b.build())
}

/// HTTP/2 when the client offers it, else HTTP/1.1; no ALPN answer for anything else (the
/// client then speaks HTTP/1.1), as Pingora's `enable_h2`.
fn prefer_h2<'a>(_: &mut SslRef, offered: &'a [u8]) -> Result<&'a [u8], AlpnError> {
    select_next_proto(ALPN_H2_H1, offered).ok_or(AlpnError::NOACK)
}

/// Puts `c` on the handshake in progress.
fn present(ssl: &mut SslRef, c: &CertKey) -> Result<(), pingora::tls::error::ErrorStack> {
    ssl.set_certificate(&c.chain[0])?;
    ssl.set_private_key(&c.key)?;
    for extra in &c.chain[1..] {
        ssl.add_chain_cert(extra.clone())?;
    }
    Ok(())
}
