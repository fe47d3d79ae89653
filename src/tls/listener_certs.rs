//! The certificates a TLS listener serves, chosen per handshake (SPEC §3.8): by the client's SNI
//! among the listener's certificates, from the live snapshot, so a reload that re-read them is in
//! effect for the next handshake, with no upgrade and without touching open connections.
//!
//! The choice is made in OpenSSL's server-name callback, which runs for every ClientHello (with
//! or without SNI) before a certificate is needed, so it works wherever the handshake runs.

use std::sync::Arc;

use crate::config::{CertKey, Listener};

/// A listener's certificates, loaded; the first is the default.
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
                let certs = certs.filter(|c| !c.is_empty())?;
                Some((l.address.clone(), Arc::new(ListenerCerts { certs })))
            })
            .collect()
    }

    /// The certificate for `sni`: the first whose names hold it exactly, else the first with a
    /// matching `*.` wildcard (one label), else the default.
    pub fn select(&self, sni: Option<&str>) -> &CertKey {
        let default = &self.certs[0];
        let Some(sni) = sni.map(|s| s.trim_end_matches('.')) else {
            return default;
        };
        let eq = |n: &String| n.eq_ignore_ascii_case(sni);
        let wild = |n: &String| {
            n.strip_prefix("*.").is_some_and(|parent| {
                sni.split_once('.').is_some_and(|(label, rest)| {
                    !label.is_empty() && rest.eq_ignore_ascii_case(parent)
                })
            })
        };
        self.certs
            .iter()
            .find(|c| c.names.iter().any(eq))
            .or_else(|| self.certs.iter().find(|c| c.names.iter().any(wild)))
            .unwrap_or(default)
    }
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
        let pick = |sni| certs.select(sni).names[0].clone();
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
