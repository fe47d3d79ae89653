//! tether's own addresses (SPEC §3.7, "a loop is not an amplifier"): an endpoint whose address
//! is one of tether's listeners, or its admin listener, sends every request back into tether —
//! one client request becomes hundreds of internal hops, or reaches the admin API through the
//! proxy. Such an endpoint is a config error; one that only resolves to such an address later
//! (`crate::dns`) is kept out of rotation.
//!
//! A listener on `0.0.0.0` takes every local IPv4 address on its port, and one on `::` every
//! local address (tether leaves `IPV6_V6ONLY` at the system default, dual stack). Whether an
//! address is local is asked of the kernel's routing table (see [`is_local`]), so an endpoint
//! written as the machine's own LAN address is caught as well as `127.0.0.1`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use super::error::ConfigError;
use super::schema::Config;
use super::typed::Validated;

/// One address tether accepts connections on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnAddr {
    pub addr: SocketAddr,
    /// The admin listener rather than a proxy listener.
    pub admin: bool,
}

impl fmt::Display for OwnAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.admin {
            "admin listener"
        } else {
            "listener"
        };
        write!(f, "tether's own {what} {}", self.addr)?;
        if self.addr.ip().is_unspecified() {
            write!(f, " (every local address on port {})", self.addr.port())?;
        }
        Ok(())
    }
}

/// Every address a config makes tether listen on (those that parse; validation refuses the rest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnAddrs(Vec<OwnAddr>);

impl OwnAddrs {
    /// The proxy listeners and the admin listener of `config`.
    pub fn of(config: &Config) -> OwnAddrs {
        let listeners = config.listeners.iter().map(|l| (&l.address, false));
        let admin = config.admin.iter().map(|a| (&a.address, true));
        let addrs = listeners
            .chain(admin)
            .filter_map(|(text, admin)| {
                Some(OwnAddr {
                    addr: text.parse().ok()?,
                    admin,
                })
            })
            .collect();
        OwnAddrs(addrs)
    }

    /// The own address a connection to `endpoint` would reach, if any.
    pub fn reached_by(&self, endpoint: SocketAddr) -> Option<OwnAddr> {
        self.0
            .iter()
            .copied()
            .find(|own| reaches(endpoint, own.addr))
    }

    /// One error per endpoint of `valid` whose address (written, or resolved at validation) is
    /// one of these, naming its YAML path and the address it would loop into.
    pub fn refuse(&self, valid: &Validated) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        for (i, pool) in valid.pools.iter().enumerate() {
            for (j, ep) in pool.endpoints.iter().enumerate() {
                // Any of a name's addresses: a request moves on to the next on a connect failure.
                let looping = ep
                    .addr
                    .all()
                    .iter()
                    .find_map(|&a| Some((a, self.reached_by(a)?)));
                let Some((addr, own)) = looping else {
                    continue;
                };
                let text = ep.addr.as_str();
                let resolved = match text.parse::<SocketAddr>() {
                    Ok(_) => String::new(),
                    Err(_) => format!("resolves to {addr}, which "),
                };
                errs.push(ConfigError::invalid(
                    format!("pools[{i}].endpoints[{j}].address"),
                    text,
                    format!(
                        "{resolved}is {own}: tether would send its requests to itself in a loop"
                    ),
                ));
            }
        }
        errs
    }
}

/// Whether a connection to `endpoint` lands on a socket listening on `listener` (same port; the
/// same address, or any local one when the listener's is unspecified).
pub fn reaches(endpoint: SocketAddr, listener: SocketAddr) -> bool {
    if endpoint.port() != listener.port() {
        return false;
    }
    let to = connected_ip(endpoint.ip());
    match listener.ip().to_canonical() {
        IpAddr::V4(l) if l.is_unspecified() => to.is_ipv4() && is_local(to),
        IpAddr::V6(l) if l.is_unspecified() => is_local(to),
        l => l == to,
    }
}

/// The address a connection to `ip` actually reaches: an unspecified address means this host's
/// loopback (as Linux connects it), a v4-mapped one its IPv4 address.
fn connected_ip(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        other => other,
    }
}

/// Whether `ip` is an address of this host. Loopback always is; otherwise the kernel is asked
/// which source address it would use to reach `ip` (a UDP `connect`, which sends nothing): it
/// picks `ip` itself only when `ip` is local. Binding to `ip` would answer wrongly on hosts with
/// `net.ipv4.ip_nonlocal_bind=1` (common where keepalived moves a virtual IP), where any bind
/// succeeds and every remote endpoint on a listener's port would be refused.
pub fn is_local(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let any: IpAddr = match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let Ok(socket) = UdpSocket::bind((any, 0)) else {
        return false;
    };
    socket.connect((ip, 9)).is_ok() && socket.local_addr().is_ok_and(|a| a.ip() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn same_address_and_port_reaches_a_listener() {
        assert!(reaches(sa("127.0.0.1:8080"), sa("127.0.0.1:8080")));
        assert!(!reaches(sa("127.0.0.1:8081"), sa("127.0.0.1:8080")));
        assert!(!reaches(sa("127.0.0.2:8080"), sa("127.0.0.1:8080")));
        assert!(reaches(sa("[::ffff:127.0.0.1]:8080"), sa("127.0.0.1:8080")));
        // Connecting to the unspecified address reaches loopback.
        assert!(reaches(sa("0.0.0.0:8080"), sa("127.0.0.1:8080")));
        assert!(reaches(sa("[::]:8080"), sa("[::1]:8080")));
        assert!(!reaches(sa("192.0.2.77:8080"), sa("127.0.0.1:8080")));
    }

    #[test]
    fn unspecified_listener_takes_every_local_address_of_its_family() {
        for ep in ["127.0.0.1:80", "127.0.0.2:80", "0.0.0.0:80"] {
            assert!(reaches(sa(ep), sa("0.0.0.0:80")), "{ep}");
            assert!(reaches(sa(ep), sa("[::]:80")), "{ep} (dual stack)");
        }
        assert!(reaches(sa("[::1]:80"), sa("[::]:80")));
        assert!(!reaches(sa("[::1]:80"), sa("0.0.0.0:80")), "IPv4 only");
        assert!(!reaches(sa("127.0.0.1:81"), sa("0.0.0.0:80")));
        // TEST-NET-3 is never assigned to a host.
        assert!(!reaches(sa("203.0.113.9:80"), sa("0.0.0.0:80")));
    }

    #[test]
    fn the_hosts_own_addresses_are_local_and_others_are_not() {
        assert!(is_local("127.0.0.3".parse().unwrap()));
        assert!(is_local("::1".parse().unwrap()));
        assert!(!is_local("203.0.113.9".parse().unwrap()));
        assert!(!is_local("2001:db8::9".parse().unwrap()));
        // Whatever address this host reaches the outside from is one of its own.
        let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
        if probe.connect("203.0.113.9:9").is_ok() {
            let own = probe.local_addr().unwrap().ip();
            assert!(is_local(own), "{own}");
        }
    }

    #[test]
    fn refuses_endpoints_on_a_listener_or_the_admin_address_by_path() {
        // Whichever loopback address `localhost` names here, the admin listener is there.
        let found = crate::config::lookup_all(&["localhost:18082"], crate::config::LOOKUP_BUDGET);
        let admin = found[0].clone().unwrap()[0];
        let yaml = format!(
            r#"
listeners: [{{ address: "127.0.0.1:18080" }}, {{ address: "0.0.0.0:18081" }}]
admin: {{ address: "{admin}" }}
pools:
  - id: p
    endpoints:
      - {{ name: ok, address: "127.0.0.1:9001" }}
      - {{ name: self, address: "127.0.0.1:18080" }}
      - {{ name: any, address: "127.0.0.1:18081" }}
      - {{ name: admin, address: "localhost:18082" }}
load_balancers:
  - {{ name: "*", default_pools: [p] }}
"#
        );
        let errs = crate::config::Config::from_yaml(&yaml, "test")
            .unwrap_err()
            .0;
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        let want = [
            "pools[0].endpoints[1].address: 127.0.0.1:18080 is tether's own listener 127.0.0.1:18080:".to_string(),
            "pools[0].endpoints[2].address: 127.0.0.1:18081 is tether's own listener 0.0.0.0:18081 (every local address on port 18081):".to_string(),
            format!("pools[0].endpoints[3].address: localhost:18082 resolves to {admin}, which is tether's own admin listener {admin}:"),
        ];
        for (got, want) in text.iter().zip(&want) {
            assert!(got.starts_with(want.as_str()), "{got}\n{want}");
            assert!(
                got.ends_with("tether would send its requests to itself in a loop"),
                "{got}"
            );
        }
    }
}
