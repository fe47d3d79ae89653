//! What an operator needs to know about a served certificate: its names, its issuer and its
//! validity in unix seconds. Read from the leaf once per question (status, metrics, the ACME
//! service's renewal clock), never per handshake.

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use pingora::tls::nid::Nid;
use pingora::tls::x509::X509Ref;

use crate::config::CertKey;

/// A leaf certificate's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub names: Vec<String>,
    /// The issuer's common name (its organisation when it has none).
    pub issuer: String,
    pub not_before: u64,
    pub not_after: u64,
}

impl CertInfo {
    /// The facts of `c`'s leaf.
    pub fn of(c: &CertKey) -> CertInfo {
        let leaf = &c.chain[0];
        CertInfo {
            names: c.names.clone(),
            issuer: issuer_of(leaf),
            not_before: unix(leaf.not_before()),
            not_after: unix(leaf.not_after()),
        }
    }

    /// The moment two thirds of the lifetime have passed: when tether renews (SPEC §3.11).
    pub fn renew_at(&self) -> u64 {
        let life = self.not_after.saturating_sub(self.not_before);
        self.not_before + life / 3 * 2 + (life % 3) * 2 / 3
    }

    /// True when every one of `domains` is among the certificate's names.
    pub fn covers(&self, domains: &[String]) -> bool {
        domains
            .iter()
            .all(|d| self.names.iter().any(|n| n.eq_ignore_ascii_case(d)))
    }
}

fn issuer_of(leaf: &X509Ref) -> String {
    let name = leaf.issuer_name();
    [Nid::COMMONNAME, Nid::ORGANIZATIONNAME]
        .iter()
        .find_map(|nid| {
            name.entries_by_nid(*nid)
                .next()
                .and_then(|e| e.data().to_string().ok())
                .map(|s| s.to_string())
        })
        .unwrap_or_default()
}

/// `t` in unix seconds; 0 when OpenSSL cannot compare it (never for a parsed certificate).
fn unix(t: &Asn1TimeRef) -> u64 {
    let Ok(epoch) = Asn1Time::from_unix(0) else {
        return 0;
    };
    epoch.diff(t).map_or(0, |d| {
        let secs = i64::from(d.days) * 86_400 + i64::from(d.secs);
        u64::try_from(secs).unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_two_thirds_of_the_lifetime() {
        let info = CertInfo {
            names: vec!["a.example.com".into()],
            issuer: String::new(),
            not_before: 1_000,
            not_after: 1_000 + 90 * 86_400,
        };
        assert_eq!(info.renew_at(), 1_000 + 60 * 86_400);
        assert!(info.covers(&["A.example.com".to_string()]));
        assert!(!info.covers(&["b.example.com".to_string()]));
    }
}
