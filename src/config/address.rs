//! An endpoint's `address`: checked for syntax at validation, its host name resolved with a time
//! bound. A name that does not resolve is not a config error (as Cloudflare, and HAProxy's
//! `init-addr last,libc,none`): the endpoint gets no traffic until a later lookup finds an
//! address, at a reload or by the resolver service (`crate::dns`). What validation found only
//! seeds the endpoint's runtime addresses (`balancer::AddressCell`); the resolver keeps them.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest one validation (or one re-resolution round) waits for DNS, all names together.
pub const LOOKUP_BUDGET: Duration = Duration::from_secs(2);

/// An endpoint's `address` as written and, once known, the socket addresses validation found
/// for it (an IP literal's own; a name's lookup, in the order given).
///
/// Attached at most once, at validation. Routing never reads them from here: they seed the
/// endpoint's runtime addresses, which the resolver service keeps up to date.
#[derive(Debug, Clone)]
pub struct OriginAddr {
    text: String,
    resolved: OnceLock<Vec<SocketAddr>>,
}

impl OriginAddr {
    /// Checks the syntax of `host:port` (SPEC §2): port 1..65535; host an IP address, a bracketed
    /// IPv6 address, or a DNS name (letters, digits and hyphens in dot-separated labels of at
    /// most 63, at most 253 in all). An IP literal comes back resolved; a name does not.
    pub fn parse(s: &str) -> Result<OriginAddr, String> {
        let resolved = OnceLock::new();
        let text = s.to_string();
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err("has port 0: expected 1..65535".into());
            }
            let _ = resolved.set(vec![addr]);
            return Ok(OriginAddr { text, resolved });
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err("is not an address: expected host:port".into());
        };
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("has port {port:?}: expected 1..65535")),
        }
        if host.starts_with('[') || host.contains(':') || host.parse::<IpAddr>().is_ok() {
            return Err("is not an address: an IPv6 address is written [addr]:port".into());
        }
        if !is_dns_name(host) {
            return Err(format!(
                "has host {host:?}, which is neither an IP address nor a valid DNS name"
            ));
        }
        Ok(OriginAddr { text, resolved })
    }

    /// The address as written in the file.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first socket address, once the host is known; `None` while a name does not resolve.
    pub fn get(&self) -> Option<SocketAddr> {
        self.all().first().copied()
    }

    /// Every socket address validation found, in order; empty while a name does not resolve.
    pub fn all(&self) -> &[SocketAddr] {
        self.resolved.get().map_or(&[], Vec::as_slice)
    }

    /// Attaches resolved addresses (not empty); true the first time, false if some were
    /// already attached.
    pub fn attach(&self, addrs: Vec<SocketAddr>) -> bool {
        !addrs.is_empty() && self.resolved.set(addrs).is_ok()
    }
}

impl fmt::Display for OriginAddr {
    /// The socket address when known, else the text followed by `(unresolved)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(addr) => addr.fmt(f),
            None => write!(f, "{} (unresolved)", self.text),
        }
    }
}

/// A host name as RFC 1123 allows it (one trailing dot accepted).
pub fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Resolves each `host:port` in `names` through the system resolver, all at once, each on its own
/// thread, and waits at most `budget` for all of them; a name not answered by then counts as
/// unresolved (its thread finishes on its own). Names under `.invalid` never resolve (RFC 6761)
/// and are not asked about. Blocking: inside the server, call it off the async reactor.
pub fn lookup_all(names: &[&str], budget: Duration) -> Vec<Result<Vec<SocketAddr>, String>> {
    let mut out: Vec<Result<Vec<SocketAddr>, String>> = names
        .iter()
        .map(|_| Err(format!("gave no answer within {budget:?}")))
        .collect();
    let (tx, rx) = mpsc::channel();
    let mut pending = 0;
    for (i, name) in names.iter().enumerate() {
        let host = name.rsplit_once(':').map_or(*name, |(h, _)| h);
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if host == "invalid" || host.ends_with(".invalid") {
            out[i] = Err("is in the reserved .invalid domain, which never resolves".into());
            continue;
        }
        let (tx, name) = (tx.clone(), name.to_string());
        let spawned = std::thread::Builder::new()
            .name("tether-dns".into())
            .spawn(move || {
                let found = match name.to_socket_addrs() {
                    Ok(addrs) => {
                        let mut all: Vec<SocketAddr> = Vec::new();
                        for a in addrs {
                            if !all.contains(&a) {
                                all.push(a);
                            }
                        }
                        if all.is_empty() {
                            Err("has no address".to_string())
                        } else {
                            Ok(all)
                        }
                    }
                    Err(e) => Err(format!("does not resolve: {e}")),
                };
                let _ = tx.send((i, found));
            });
        match spawned {
            Ok(_) => pending += 1,
            Err(e) => out[i] = Err(format!("could not be looked up: {e}")),
        }
    }
    let deadline = Instant::now() + budget;
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, found)) => {
                out[i] = found;
                pending -= 1;
            }
            Err(_) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_name_syntax_follows_rfc_1123() {
        for good in [
            "app-1.example.com",
            "a",
            "localhost",
            "x.invalid.",
            "1-2.b3",
            "A.B",
        ] {
            assert!(is_dns_name(good), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a"; 127].join(".") + ".bc"; // 256 chars
        for bad in [
            "",
            ".",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "a b",
            "ä.com",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
        assert!(is_dns_name(&["a"; 126].join(".")));
    }

    #[test]
    fn address_syntax_is_checked_without_resolving() {
        let ip = OriginAddr::parse("127.0.0.1:80").unwrap();
        assert_eq!(ip.get(), Some("127.0.0.1:80".parse().unwrap()));
        let v6 = OriginAddr::parse("[::1]:443").unwrap();
        assert_eq!(v6.get(), Some("[::1]:443".parse().unwrap()));
        let name = OriginAddr::parse("app-1.example.com:443").unwrap();
        assert_eq!(name.get(), None);
        assert_eq!(name.to_string(), "app-1.example.com:443 (unresolved)");
        for bad in [
            "nowhere",
            "host:0",
            "host:65536",
            "host:",
            "127.0.0.1:0",
            "::1:80",
            "[::1:80",
            "bad_name:80",
            ":80",
        ] {
            assert!(OriginAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_address_is_attached_once() {
        let name = OriginAddr::parse("app.example:80").unwrap();
        assert!(!name.attach(vec![]));
        assert!(name.attach(vec!["127.0.0.2:80".parse().unwrap()]));
        assert!(!name.attach(vec!["127.0.0.3:80".parse().unwrap()]));
        assert_eq!(name.to_string(), "127.0.0.2:80");
    }

    #[test]
    fn invalid_names_fail_without_a_lookup() {
        let found = lookup_all(&["app-1.invalid:80", "INVALID.:80"], Duration::ZERO);
        for f in found {
            assert!(f.unwrap_err().contains(".invalid"));
        }
    }
}
