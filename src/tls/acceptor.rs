//! A TLS listener's OpenSSL acceptor: Pingora's own `TlsSettings::intermediate` + `enable_h2`
//! profile (Mozilla's intermediate ciphers, HTTP/2 preferred by ALPN, HTTP/1.1 allowed), with the
//! certificate chosen at each handshake from the listener's [`CertSlot`] by the client's SNI.
//! The handshake itself runs in the proxy's connection guard, counted and timed from accept.
//!
//! TLS-ALPN-01 (RFC 8737) is answered here too: a validator offers only ALPN `acme-tls/1`, and
//! gets the challenge certificate for its SNI. OpenSSL runs the server-name callback before it
//! sees ALPN, so the choice is remade in the ALPN callback, which OpenSSL runs before it
//! selects the certificate to send (TLS 1.3: ALPN is handled while the ClientHello is
//! processed, the certificate chosen after; TLS 1.2 keeps the key slot that `present` fills, as
//! both certificates are ECDSA P-256). An ordinary client never offers `acme-tls/1`.

use std::sync::Arc;

use pingora::tls::ssl::{
    select_next_proto, AlpnError, NameType, SniError, SslAcceptor, SslMethod, SslMode, SslRef,
};

use super::slot::CertSlot;
use crate::config::CertKey;

/// ALPN protocols tether offers, most preferred first, in wire format.
const ALPN_H2_H1: &[u8] = b"\x02h2\x08http/1.1";
/// The ALPN protocol of TLS-ALPN-01 validation, in wire format.
const ALPN_ACME: &[u8] = b"\x0aacme-tls/1";

/// An acceptor that presents, at each handshake, the certificate `slot` holds for the client's
/// SNI. Its own context carries no certificate, so OpenSSL can only pick the slot's.
pub fn build(
    address: String,
    slot: Arc<CertSlot>,
) -> Result<SslAcceptor, pingora::tls::error::ErrorStack> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    // OpenSSL's server-name callback runs for every ClientHello (with or without SNI) before a
    // certificate is needed.
    let by_name = slot.clone();
    let name_address = address.clone();
    b.set_servername_callback(move |ssl, _alert| {
        let files = by_name.current();
        let issued = by_name.issued();
        let sni = ssl.servername(NameType::HOST_NAME);
        let Some(chosen) = super::slot::choose(&files, issued.as_deref(), sni) else {
            // An ACME listener before its first certificate has nothing to present (SPEC
            // §3.11), except to its own validation, which the ALPN callback confirms.
            if let Some(challenge) = sni.and_then(|n| by_name.challenge(n)) {
                return present_only(ssl, &challenge).map_err(|_| SniError::ALERT_FATAL);
            }
            log::debug!("listener {name_address}: no certificate yet for {sni:?}");
            return Err(SniError::ALERT_FATAL);
        };
        present(ssl, chosen).map_err(|e| {
            log::error!("listener {name_address}: cannot present its certificate: {e}");
            SniError::ALERT_FATAL
        })
    });
    b.set_alpn_select_callback(move |ssl, offered| {
        let Some(acme) = select_next_proto(ALPN_ACME, offered) else {
            return prefer_h2(ssl, offered);
        };
        answer_acme(ssl, &slot, &address)?;
        Ok(acme)
    });
    // The listener's socket reads are unbuffered (server::listener_config): OpenSSL reads ahead
    // itself, a whole record per read, into buffers it frees while the connection is idle (the
    // nginx setting), so an idle TLS connection holds no 16 KiB record buffer.
    b.set_read_ahead(true);
    b.set_mode(SslMode::RELEASE_BUFFERS);
    Ok(b.build())
}

/// A TLS-ALPN-01 validation: presents the challenge certificate for the SNI, or refuses the
/// handshake when no validation of that name is expected.
fn answer_acme(ssl: &mut SslRef, slot: &CertSlot, address: &str) -> Result<(), AlpnError> {
    let sni = ssl
        .servername(NameType::HOST_NAME)
        .unwrap_or_default()
        .to_string();
    let Some(cert) = slot.challenge(&sni) else {
        log::info!(
            "listener {address}: acme-tls/1 handshake for {sni:?} with no validation pending"
        );
        return Err(AlpnError::ALERT_FATAL);
    };
    present_only(ssl, &cert).map_err(|e| {
        log::error!("listener {address}: cannot present the TLS-ALPN-01 certificate: {e}");
        AlpnError::ALERT_FATAL
    })?;
    log::info!("listener {address}: answered a TLS-ALPN-01 validation for {sni}");
    Ok(())
}

/// Puts `c` on the handshake in progress in place of whatever chain was there.
fn present_only(ssl: &mut SslRef, c: &CertKey) -> Result<(), pingora::tls::error::ErrorStack> {
    ssl.set_certificate(&c.chain[0])?;
    ssl.set_private_key(&c.key)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Listener, ListenerTls};
    use crate::tls::listener_certs::ListenerCerts;
    use crate::tls::slot::tests::cert;
    use pingora::tls::ssl::{SslConnector, SslVerifyMode, SslVersion};

    /// A slot serving `shop.test` from its files, with a TLS-ALPN-01 challenge for it pending.
    fn slot() -> Arc<CertSlot> {
        let tls: ListenerTls = serde_yaml::from_str("acme: { domains: [shop.test] }").unwrap();
        let l = Listener {
            address: "127.0.0.1:443".into(),
            tls: Some(tls),
        };
        let files = ListenerCerts::by_address(&[l], vec![Some(vec![cert(&["shop.test"])])]);
        let slot = Arc::new(CertSlot::new(files[0].1.clone()));
        slot.add_challenge("shop.test", Arc::new(cert(&["challenge.shop.test"])));
        slot
    }

    /// One handshake for `shop.test` offering `alpn` at TLS `version`: the certificate's first
    /// name and the protocol agreed, or `None` if the handshake failed.
    fn handshake(
        slot: Arc<CertSlot>,
        alpn: &[u8],
        version: SslVersion,
    ) -> Option<(String, Vec<u8>)> {
        let acceptor = build("test".into(), slot).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let _ = acceptor.accept(tcp);
        });
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        b.set_max_proto_version(Some(version)).unwrap();
        b.set_alpn_protos(alpn).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let got = b.build().connect("shop.test", tcp).ok().map(|s| {
            let peer = s.ssl().peer_certificate().unwrap();
            let names = peer.subject_alt_names().unwrap();
            let name = names.iter().next().unwrap().dnsname().unwrap().to_string();
            let alpn = s
                .ssl()
                .selected_alpn_protocol()
                .unwrap_or_default()
                .to_vec();
            (name, alpn)
        });
        server.join().unwrap();
        got
    }

    #[test]
    fn acme_tls_1_gets_the_challenge_certificate_at_tls_1_2_and_1_3_and_nobody_else_does() {
        for v in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
            let (name, alpn) = handshake(slot(), ALPN_ACME, v).unwrap();
            assert_eq!(
                (name.as_str(), alpn.as_slice()),
                ("challenge.shop.test", &b"acme-tls/1"[..]),
                "{v:?}"
            );
            let (name, alpn) = handshake(slot(), ALPN_H2_H1, v).unwrap();
            assert_eq!(
                (name.as_str(), alpn.as_slice()),
                ("shop.test", &b"h2"[..]),
                "{v:?}"
            );
        }
        let none_pending = slot();
        none_pending.remove_challenge("shop.test");
        assert!(handshake(none_pending, ALPN_ACME, SslVersion::TLS1_3).is_none());
    }
}
