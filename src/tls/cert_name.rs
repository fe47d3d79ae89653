//! Whether an origin's certificate names the server tether meant to reach, checked as browsers
//! check it (RFC 6125, CA/Browser Forum): subjectAltName only, never the subject CN; a wildcard
//! only as the whole left-most label, standing for exactly one label; ASCII case ignored; a
//! trailing dot on either side ignored; an IP address only against IP SANs.
//!
//! Why here and not OpenSSL's own check: Pingora 0.9.1 hands the SNI to OpenSSL's
//! `X509_check_host` with the default flags, which fall back to the subject CN when a
//! certificate has no DNS SAN and accept partial wildcards (`o*.example.com`). The flags that
//! forbid both (`X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS`)
//! live on the connection's verify parameters, which Pingora builds inside its connector with
//! no hook before the handshake; after it, only an `unsafe` call into `openssl-sys` would reach
//! `X509_check_host`. A pure function over the SAN list, run on a chain OpenSSL has already
//! verified, is smaller, safe, testable without a socket, and decides DNS names and addresses
//! in one place.

use std::net::IpAddr;

use pingora::tls::x509::X509Ref;

/// What a certificate must name: the server name tether sent (or would send), or the address
/// it reached when that name is an IP literal (no SNI is sent for one, RFC 6066).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Dns(String),
    Ip(IpAddr),
}

impl Reference {
    /// The reference for `sni` as the config resolved it (an IP literal or a host name).
    pub fn of(sni: &str) -> Reference {
        match sni.parse::<IpAddr>() {
            Ok(ip) => Reference::Ip(ip),
            Err(_) => Reference::Dns(sni.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Dns(name) => f.write_str(name),
            Reference::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Whether `cert`'s subjectAltNames hold `reference`; a certificate without SANs names nothing.
pub fn names(cert: &X509Ref, reference: &Reference) -> bool {
    let Some(sans) = cert.subject_alt_names() else {
        return false;
    };
    sans.iter().any(|san| match reference {
        Reference::Dns(host) => san.dnsname().is_some_and(|p| dns_matches(p, host)),
        Reference::Ip(ip) => san.ipaddress().is_some_and(|b| match ip {
            IpAddr::V4(v4) => b == v4.octets(),
            IpAddr::V6(v6) => b == v6.octets(),
        }),
    })
}

/// Whether the DNS SAN `pattern` matches the host name `host`. `*` counts only as the whole
/// left-most label of a pattern with at least two labels after it (never a whole top-level
/// domain); it matches exactly one non-empty label, never the bare parent.
pub fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    let host = host.strip_suffix('.').unwrap_or(host);
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(parent) => {
            parent.contains('.')
                && !parent.contains('*')
                && host.split_once('.').is_some_and(|(label, rest)| {
                    !label.is_empty() && rest.eq_ignore_ascii_case(parent)
                })
        }
        None => !pattern.contains('*') && pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_match_as_browsers_match_them() {
        let cases = [
            // (SAN pattern, host, matches)
            ("origin.example.test", "origin.example.test", true),
            ("Origin.Example.TEST", "origin.example.test", true),
            ("origin.example.test", "ORIGIN.example.test", true),
            ("origin.example.test.", "origin.example.test", true),
            ("origin.example.test", "origin.example.test.", true),
            ("other.example.test", "origin.example.test", false),
            ("example.test", "origin.example.test", false),
            ("origin.example.test", "example.test", false),
            ("*.example.test", "origin.example.test", true),
            ("*.EXAMPLE.test", "Origin.example.test.", true),
            ("*.example.test.", "origin.example.test", true),
            ("*.example.test", "example.test", false),
            ("*.example.test", "a.b.example.test", false),
            ("*.example.test", ".example.test", false),
            ("o*.example.test", "origin.example.test", false),
            ("*n.example.test", "origin.example.test", false),
            ("or*in.example.test", "origin.example.test", false),
            ("*", "origin", false),
            ("*.test", "example.test", false),
            ("*.*.test", "a.b.test", false),
            ("origin.*.test", "origin.example.test", false),
            ("", "origin.example.test", false),
            (".", "origin.example.test", false),
            ("origin.example.test", "", false),
            (
                "xn--bcher-kva.example.test",
                "XN--BCHER-KVA.example.test",
                true,
            ),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(dns_matches(pattern, host), want, "{pattern:?} vs {host:?}");
        }
    }

    #[test]
    fn a_reference_is_an_address_only_when_the_name_is_an_ip_literal() {
        assert_eq!(
            Reference::of("127.0.0.1"),
            Reference::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(Reference::of("::1"), Reference::Ip("::1".parse().unwrap()));
        assert_eq!(
            Reference::of("Origin.Example.test."),
            Reference::Dns("origin.example.test".into())
        );
        assert_eq!(Reference::of("::1").to_string(), "::1");
    }

    /// A certificate for `names` (DNS names or addresses) with subject CN `cn`.
    fn cert(names: &[&str], cn: &str) -> pingora::tls::x509::X509 {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, cn.to_string());
        let pem = p
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem();
        pingora::tls::x509::X509::from_pem(pem.as_bytes()).unwrap()
    }

    #[test]
    fn only_subject_alt_names_count_never_the_cn() {
        let origin = Reference::of("origin.example.test");
        assert!(!names(&cert(&[], "origin.example.test"), &origin));
        assert!(!names(
            &cert(&["other.example.test"], "origin.example.test"),
            &origin
        ));
        assert!(names(
            &cert(&["other.example.test", "*.example.test"], "x"),
            &origin
        ));
    }

    #[test]
    fn an_address_matches_ip_sans_only() {
        let v4 = Reference::of("127.0.0.1");
        assert!(names(&cert(&["127.0.0.1"], "x"), &v4));
        assert!(!names(&cert(&["127.0.0.2"], "127.0.0.1"), &v4));
        let v6 = Reference::of("::1");
        assert!(names(&cert(&["::1"], "x"), &v6));
        assert!(!names(&cert(&["127.0.0.1"], "::1"), &v6));
    }
}
