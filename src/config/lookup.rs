//! Asking DNS for the addresses of an endpoint's host name, through hickory-resolver: the
//! servers of `resolver.nameservers` (UDP, TCP when an answer is truncated) or, with none, those
//! of the system's `resolv.conf` (and its hosts file). Unlike the C library's `getaddrinfo`, an
//! answer carries its TTL, which tells the resolver service when to ask again.
//!
//! A leaf: it knows nothing of endpoints or snapshots, so validation uses it at load and the
//! resolver service (`dns`) while tether runs.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

/// How long one question to one server may take before it counts as unanswered.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one lookup may take in all (hickory may ask over UDP, then TCP, then again).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// A DNS client for endpoint names, built from `resolver.nameservers`.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    servers: Vec<SocketAddr>,
}

/// What a name resolved to: its addresses in the order the answer gave them, and until when
/// the answer holds (its shortest TTL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub ips: Vec<IpAddr>,
    pub valid_until: Instant,
}

impl Dns {
    /// A client asking `servers` in order (empty: the system's `resolv.conf`); an error when
    /// the system configuration cannot be read.
    pub fn new(servers: &[SocketAddr]) -> Result<Dns, String> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?
        } else {
            let mut config = ResolverConfig::new();
            for &server in servers {
                config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
            }
            let mut b =
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
            // The operator named the servers that decide: no hosts file in between.
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        };
        let opts = builder.options_mut();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 1;
        Ok(Dns {
            resolver: builder.build(),
            servers: servers.to_vec(),
        })
    }

    /// The servers this client asks (empty: the system's).
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Looks `host` up (A, then AAAA when there is no A record); an error says why in words.
    pub async fn lookup(&self, host: &str) -> Result<Answer, String> {
        if is_reserved_invalid(host) {
            return Err("is in the reserved .invalid domain, which never resolves".into());
        }
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, self.resolver.lookup_ip(host))
            .await
            .map_err(|_| format!("gave no answer within {LOOKUP_TIMEOUT:?}"))?
            .map_err(|e| format!("does not resolve: {e}"))?;
        let ips: Vec<IpAddr> = found.iter().collect();
        if ips.is_empty() {
            return Err("has no address".into());
        }
        Ok(Answer {
            ips,
            valid_until: found.valid_until(),
        })
    }
}

/// Names under `.invalid` never resolve (RFC 6761) and are never asked about.
pub fn is_reserved_invalid(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "invalid" || host.ends_with(".invalid")
}

/// The host and port of an endpoint `address` written `host:port` (validation checked it).
pub fn host_port(written: &str) -> Option<(&str, u16)> {
    let (host, port) = written.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// Resolves each `host:port` of `names` through `servers`, all at once, waiting at most
/// `budget` in all: for validation, which runs outside the server's reactor. Blocking (a
/// thread with its own small runtime); a name not answered in time counts as unresolved.
pub fn lookup_blocking(
    servers: &[SocketAddr],
    names: &[&str],
    budget: Duration,
) -> Vec<Result<Vec<SocketAddr>, String>> {
    let unanswered = move || Err(format!("gave no answer within {budget:?}"));
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let count = names.len();
    let servers = servers.to_vec();
    let work = std::thread::Builder::new()
        .name("tether-dns".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("could not be looked up: {e}"))?;
            rt.block_on(async move {
                let dns = Dns::new(&servers)?;
                let mut set = tokio::task::JoinSet::new();
                for (i, name) in names.into_iter().enumerate() {
                    let dns = dns.clone();
                    set.spawn(async move { (i, resolve_written(&dns, &name).await) });
                }
                let mut out: Vec<Result<Vec<SocketAddr>, String>> =
                    (0..count).map(|_| unanswered()).collect();
                let _ = tokio::time::timeout(budget, async {
                    while let Some(Ok((i, found))) = set.join_next().await {
                        out[i] = found;
                    }
                })
                .await;
                Ok::<_, String>(out)
            })
        });
    match work.map(|w| w.join()) {
        Ok(Ok(Ok(out))) => out,
        Ok(Ok(Err(why))) => (0..count).map(|_| Err(why.clone())).collect(),
        _ => (0..count).map(|_| unanswered()).collect(),
    }
}

/// The socket addresses of one `host:port`.
async fn resolve_written(dns: &Dns, written: &str) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = host_port(written).ok_or("is not host:port")?;
    let answer = dns.lookup(host).await?;
    Ok(answer
        .ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_and_written_addresses() {
        assert!(is_reserved_invalid("app-1.invalid"));
        assert!(is_reserved_invalid("INVALID."));
        assert!(!is_reserved_invalid("invalid.example"));
        assert_eq!(host_port("app.test:8080"), Some(("app.test", 8080)));
        assert_eq!(host_port("app.test"), None);
    }

    #[test]
    fn a_name_server_that_does_not_answer_leaves_names_unresolved_within_the_budget() {
        // Nothing listens on this UDP port: refused at once, or silent until the budget.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = silent.local_addr().unwrap();
        let started = Instant::now();
        let found = lookup_blocking(
            &[server],
            &["app.test:80", "x.invalid:80"],
            Duration::from_millis(300),
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(found[0].is_err(), "{found:?}");
        assert!(found[1].as_ref().unwrap_err().contains(".invalid"));
    }
}
