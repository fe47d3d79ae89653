//! The `resolver:` section (SPEC §2, §3.10): how endpoint host names are looked up while tether
//! runs — which name servers to ask (none: the system's `resolv.conf`) and how often at least.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;

/// `resolver:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverSection {
    /// `IP:port` of each name server tether asks itself (UDP, TCP on truncation), in order;
    /// empty: the servers of the system's `resolv.conf`.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// A name is looked up again at least this often (sooner when its record's TTL is shorter).
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
}

impl Default for ResolverSection {
    fn default() -> Self {
        ResolverSection {
            nameservers: Vec::new(),
            interval_seconds: default_interval(),
        }
    }
}

fn default_interval() -> u64 {
    30
}

/// The longest `interval_seconds` accepted: a day. Past it a moved origin is followed by nobody.
pub const MAX_INTERVAL_SECONDS: u64 = 86_400;

impl ResolverSection {
    /// The name servers, parsed (validation refused any that does not parse).
    pub fn nameserver_addrs(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    }

    /// `interval_seconds` as a duration, never under 1 s.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds.max(1))
    }
}

/// Checks `resolver:`; every error names its YAML path.
pub fn validate_resolver(r: &ResolverSection, errs: &mut Vec<ConfigError>) {
    for (i, ns) in r.nameservers.iter().enumerate() {
        match ns.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 => {}
            Ok(_) => errs.push(ConfigError::invalid(
                format!("resolver.nameservers[{i}]"),
                ns,
                "has port 0: expected 1..65535 (53 for a usual name server)",
            )),
            Err(_) => errs.push(ConfigError::invalid(
                format!("resolver.nameservers[{i}]"),
                ns,
                "is not IP:port (a name server is given by address, e.g. 10.0.0.2:53 or [2001:db8::53]:53)",
            )),
        }
    }
    if !(1..=MAX_INTERVAL_SECONDS).contains(&r.interval_seconds) {
        errs.push(ConfigError::invalid(
            "resolver.interval_seconds",
            r.interval_seconds.to_string(),
            format!("must be 1..{MAX_INTERVAL_SECONDS}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(resolver: &str) -> Result<crate::config::Validated, Vec<String>> {
        let yaml = format!(
            "listeners: [{{ address: \"127.0.0.1:8080\" }}]\n{resolver}\npools:\n  - id: p\n    endpoints: [{{ name: a, address: \"127.0.0.1:9001\" }}]\nload_balancers: [{{ name: \"*\", default_pools: [p] }}]\n"
        );
        Config::from_yaml(&yaml, "test").map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn resolver_defaults_to_the_system_and_thirty_seconds() {
        let v = load("").unwrap();
        assert!(v.file.resolver.nameservers.is_empty());
        assert_eq!(v.file.resolver.interval_seconds, 30);
        let v = load(
            "resolver: { nameservers: [\"127.0.0.1:5353\", \"[::1]:53\"], interval_seconds: 1 }",
        )
        .unwrap();
        assert_eq!(v.file.resolver.nameserver_addrs().len(), 2);
        assert_eq!(v.file.resolver.interval().as_secs(), 1);
    }

    #[test]
    fn resolver_errors_name_their_yaml_path() {
        let errs = load(
            "resolver: { nameservers: [\"127.0.0.1:53\", \"dns.example:53\", \"10.0.0.1\", \"10.0.0.1:0\"], interval_seconds: 0 }",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with("resolver.nameservers[1]: dns.example:53 is not IP:port"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("resolver.nameservers[2]: 10.0.0.1 is not IP:port"),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].starts_with("resolver.nameservers[3]: 10.0.0.1:0 has port 0"),
            "{}",
            errs[2]
        );
        assert_eq!(errs[3], "resolver.interval_seconds: 0 must be 1..86400");
        let unknown = load("resolver: { servers: [] }").unwrap_err();
        assert!(unknown[0].starts_with("resolver"), "{unknown:?}");
        assert!(
            unknown[0].contains("unknown field `servers`"),
            "{unknown:?}"
        );
    }
}
