//! Who may use the admin API (SPEC §4): with `admin.token`, a request carrying it; without one,
//! only a request that a page on another site could not have made the browser send.
//!
//! A browser lets any site send a "simple" cross-site `POST` (no preflight for `text/plain`), and
//! a DNS-rebinding site can even read the answer; both show in the headers the browser cannot
//! omit or forge: `Origin` names the page's site, and `Host` names the attacker's domain.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// True when `authorization` carries `token` under the `Bearer` scheme (scheme in any case, as
/// RFC 9110 says). Both sides are hashed first and the digests compared in constant time, so
/// the time taken reveals neither the token's bytes nor its length.
pub fn bearer_matches(token: &str, authorization: Option<&[u8]>) -> bool {
    let Some(given) = authorization.and_then(bearer_credentials) else {
        return false;
    };
    let (given, want) = (Sha256::digest(given), Sha256::digest(token.as_bytes()));
    bool::from(given.as_slice().ct_eq(want.as_slice()))
}

/// The credentials of an `Authorization: Bearer <credentials>` value.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
}

/// Why a token-less admin request was refused: it may come from a page on another site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossSite {
    /// `Host` is neither a loopback name nor the listener's own address (DNS rebinding).
    ForeignHost,
    /// `Origin` is present and is not this listener's (cross-site request forgery).
    ForeignOrigin,
}

impl CrossSite {
    /// The message of the 403 answer; it names the rule, never the request's values.
    pub fn message(self) -> &'static str {
        match self {
            CrossSite::ForeignHost => {
                "refused: the Host is not a loopback name or this listener's address; set admin.token to allow other names"
            }
            CrossSite::ForeignOrigin => "refused: a cross-site request (Origin is not this listener)",
        }
    }
}

/// Checks a token-less admin request. `host` is the `Host` header (or absolute target's
/// authority), `origin` the `Origin` header, `local` the address the connection was accepted on.
/// A request without `Host` or `Origin` cannot come from a browser, so curl-style clients pass.
pub fn same_site(
    host: Option<&[u8]>,
    origin: Option<&[u8]>,
    local: Option<IpAddr>,
) -> Result<(), CrossSite> {
    if let Some(host) = host {
        if !host_is_local(host, local) {
            return Err(CrossSite::ForeignHost);
        }
    }
    if let Some(origin) = origin {
        // Same origin means `http://` and exactly the Host the request was sent to (the admin
        // listener speaks plain HTTP). `null` (sandboxed or opaque pages) is never the same.
        let own = host.and_then(|h| {
            let o = origin.trim_ascii();
            o.get(..7)
                .filter(|s| s.eq_ignore_ascii_case(b"http://"))
                .map(|_| o[7..].eq_ignore_ascii_case(h.trim_ascii()))
        });
        if own != Some(true) {
            return Err(CrossSite::ForeignOrigin);
        }
    }
    Ok(())
}

/// True for `localhost`, a loopback address, or the listener's own address, with any port.
fn host_is_local(host: &[u8], local: Option<IpAddr>) -> bool {
    let Some(name) = host_name(host.trim_ascii()) else {
        return false;
    };
    if name.eq_ignore_ascii_case(b"localhost") || name.eq_ignore_ascii_case(b"localhost.") {
        return true;
    }
    let Some(ip) = std::str::from_utf8(name)
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
    else {
        return false;
    };
    ip.is_loopback() || local.is_some_and(|l| l.to_canonical() == ip)
}

/// The host part of `host[:port]` or `[v6][:port]`; `None` when the port is not digits.
fn host_name(host: &[u8]) -> Option<&[u8]> {
    let port_ok = |p: &[u8]| p.iter().all(u8::is_ascii_digit);
    if let Some(rest) = host.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        let after = &rest[end + 1..];
        let port_ok = after.is_empty() || after.strip_prefix(b":").is_some_and(port_ok);
        return port_ok.then_some(&rest[..end]);
    }
    match host.iter().position(|&b| b == b':') {
        Some(colon) => port_ok(&host[colon + 1..]).then_some(&host[..colon]),
        None => Some(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_any_case_exact_token() {
        let ok = |h: &[u8]| bearer_matches("s3cret", Some(h));
        assert!(ok(b"Bearer s3cret"));
        assert!(ok(b"bearer s3cret"));
        assert!(ok(b"BEARER   s3cret "));
        assert!(!ok(b"Bearer s3cre"));
        assert!(!ok(b"Bearer s3cretX"));
        assert!(!ok(b"Basic s3cret"));
        assert!(!ok(b"s3cret"));
        assert!(!ok(b"Bearers3cret"));
        assert!(!ok(b"Bearer "));
        assert!(!bearer_matches("s3cret", None));
    }

    #[test]
    fn loopback_and_own_address_hosts_only() {
        let local: Option<IpAddr> = "10.1.2.3".parse().ok();
        for h in [
            "localhost",
            "LOCALHOST:9901",
            "127.0.0.1:9901",
            "127.8.9.10",
            "[::1]:9901",
            "[::1]",
            "10.1.2.3:9901",
        ] {
            assert_eq!(same_site(Some(h.as_bytes()), None, local), Ok(()), "{h}");
        }
        for h in [
            "attacker.example",
            "attacker.example:9901",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "10.1.2.4:9901",
            "[::2]:1",
            "127.0.0.1:x",
            "",
        ] {
            assert_eq!(
                same_site(Some(h.as_bytes()), None, local),
                Err(CrossSite::ForeignHost),
                "{h}"
            );
        }
        assert_eq!(same_site(None, None, None), Ok(()));
    }

    #[test]
    fn origin_must_be_the_listener_itself() {
        let host = Some(&b"127.0.0.1:9901"[..]);
        assert_eq!(
            same_site(host, Some(b"http://127.0.0.1:9901"), None),
            Ok(())
        );
        assert_eq!(
            same_site(host, Some(b"HTTP://127.0.0.1:9901"), None),
            Ok(())
        );
        for o in [
            "https://evil.example",
            "http://127.0.0.1:9902",
            "https://127.0.0.1:9901",
            "null",
            "",
        ] {
            assert_eq!(
                same_site(host, Some(o.as_bytes()), None),
                Err(CrossSite::ForeignOrigin),
                "{o}"
            );
        }
        assert_eq!(
            same_site(None, Some(b"http://127.0.0.1:9901"), None),
            Err(CrossSite::ForeignOrigin)
        );
    }
}
