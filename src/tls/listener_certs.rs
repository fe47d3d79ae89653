//! The certificates a TLS listener serves, chosen per handshake (SPEC §3.8): by the client's SNI
//! among the listener's certificates, from the live snapshot, so a reload that re-read them is in
//! effect for the next handshake, with no upgrade and without touching open connections.
//!
//! The choice is made in OpenSSL's server-name callback, which runs for every ClientHello (with
//! or without SNI) before a certificate is needed, so it works wherever the handshake runs.

use std::sync::Arc;

use crate::config::{CertKey, Listener};

/// A listener's certificates, loaded; the first is the default. Empty for a listener whose
/// certificates are all ordered at run time (ACME).
#[derive(Debug)]
pub struct ListenerCerts {
    certs: Vec<CertKey>,
}

impl ListenerCerts {
    /// Each TLS listener's certificates by address, from what validation loaded per listener.
    pub fn by_address(
        listeners: &[Listener],
        loaded: Vec<Option<Vec<CertKey>>>,
    ) -> Vec<(String, Arc<ListenerCerts>)> {
        listeners
            .iter()
            .zip(loaded)
            .filter_map(|(l, certs)| {
                let certs = certs?;
                Some((l.address.clone(), Arc::new(ListenerCerts { certs })))
            })
            .collect()
    }

    /// Every certificate, the default first.
    pub fn all(&self) -> &[CertKey] {
        &self.certs
    }

    /// The certificate for `sni`: the first whose names hold it exactly, else the first with a
    /// matching `*.` wildcard (one label), else the default; `None` only when there is none.
    pub fn select(&self, sni: Option<&str>) -> Option<&CertKey> {
        let default = self.certs.first();
        let Some(sni) = sni else {
            return default;
        };
        self.certs
            .iter()
            .find(|c| names_exactly(c, sni))
            .or_else(|| self.certs.iter().find(|c| names_by_wildcard(c, sni)))
            .or(default)
    }
}

/// True when one of `c`'s names is `sni` (case and a trailing dot ignored).
pub fn names_exactly(c: &CertKey, sni: &str) -> bool {
    let sni = sni.trim_end_matches('.');
    c.names.iter().any(|n| n.eq_ignore_ascii_case(sni))
}

/// True when one of `c`'s `*.` names covers `sni` (one label).
pub fn names_by_wildcard(c: &CertKey, sni: &str) -> bool {
    let sni = sni.trim_end_matches('.');
    c.names.iter().any(|n| {
        n.strip_prefix("*.").is_some_and(|parent| {
            sni.split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(parent))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::tls::pkey::PKey;

    fn cert(names: &[&str]) -> CertKey {
        let key = PKey::generate_ed25519().unwrap();
        let mut b = pingora::tls::x509::X509::builder().unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, pingora::tls::hash::MessageDigest::null())
            .unwrap();
        CertKey {
            chain: vec![b.build()],
            key,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_default() {
        let certs = ListenerCerts {
            certs: vec![
                cert(&["default.test"]),
                cert(&["*.shop.test"]),
                cert(&["api.shop.test", "api.test"]),
            ],
        };
        let pick = |sni| certs.select(sni).unwrap().names[0].clone();
        assert_eq!(
            pick(Some("API.shop.test")),
            "api.shop.test",
            "exact beats wildcard"
        );
        assert_eq!(pick(Some("www.shop.test")), "*.shop.test");
        assert_eq!(
            pick(Some("a.b.shop.test")),
            "default.test",
            "one label only"
        );
        assert_eq!(pick(Some("shop.test")), "default.test");
        assert_eq!(pick(Some("api.test.")), "api.shop.test");
        assert_eq!(pick(None), "default.test");
    }
}
