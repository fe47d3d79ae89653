//! The typed layer over the serde schema: what validation parsed while it checked a file, so
//! that nothing downstream parses (or resolves) a string again. Compiling a snapshot from a
//! [`Validated`] config therefore cannot fail.
//!
//! One tree from validation to compile: a pool, endpoint or balancer here holds every value a
//! snapshot is compiled from, parsed or copied from the file, so compiling reads this tree alone
//! and never zips it back together with the file's lists (`pools[i]` here was `file.pools[i]`
//! there; the file's lists stay only as written, for display). A new schema field that the
//! running proxy uses gets a field here, set by its section's validator.

use std::net::SocketAddr;
use std::ops::{Deref, RangeInclusive};
use std::time::Duration;

use super::address::{lookup_all, OriginAddr, LOOKUP_BUDGET};
use super::listener_tls::CertKey;
use super::origin_tls::OriginTls;
use super::schema::{
    Affinity, Config, Failover, Monitor, MonitorKind, OriginPolicy, SameSite, Secure,
    SteeringPolicy,
};
use super::values::{ExpectedCodes, RetryStatuses, SessionHeader};

/// A config that passed validation, with its parsed values.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The file as written (after `${ENV}` expansion): process settings, status pages and
    /// reload diffs read it.
    pub file: Config,
    /// Per `monitors[i]`; for a `tcp` monitor, which sends no request, `expected_codes` is `2xx`.
    pub monitors: Vec<MonitorSpec>,
    /// Per `pools[i]`.
    pub pools: Vec<TypedPool>,
    /// Per `load_balancers[i]`.
    pub balancers: Vec<TypedBalancer>,
    /// `trusted_proxies`, parsed; a bare address is a one-host network.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// What is valid but weaker than it looks or will not work as written (a short cookie key,
    /// `verify: false`, an endpoint name that does not resolve, ...; see `config::warnings`), one
    /// line each, naming the YAML path: logged at start and reload, printed by `--test`.
    pub warnings: Vec<String>,
    /// Per `listeners[i]`: its certificates, read from disk (`None` for a plain listener).
    pub listener_certs: Vec<Option<Vec<CertKey>>>,
}

impl Deref for Validated {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.file
    }
}

/// One monitor, ready to probe with: every string parsed, every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSpec {
    pub id: String,
    pub kind: MonitorKind,
    pub method: String,
    pub path: String,
    /// 0 = the endpoint's own port.
    pub port: u16,
    /// The `Host` to send; `None` = the endpoint's Host override, else its address.
    pub host: Option<String>,
    /// Every other configured header, in file order.
    pub headers: Vec<(String, String)>,
    pub expected_codes: ExpectedCodes,
    /// The text `expected_codes` was written as, for log lines.
    pub expected_codes_text: String,
    /// Lower-cased; empty = the body is not checked.
    pub expected_body: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub consecutive_up: u32,
    pub consecutive_down: u32,
}

impl MonitorSpec {
    /// A monitor's settings with its `expected_codes` as validation parsed them.
    pub fn compile(m: &Monitor, expected_codes: ExpectedCodes) -> MonitorSpec {
        let mut host = None;
        let mut headers = Vec::new();
        for (name, values) in &m.header {
            for v in values {
                if name.eq_ignore_ascii_case("host") {
                    host.get_or_insert_with(|| v.clone());
                } else {
                    headers.push((name.clone(), v.clone()));
                }
            }
        }
        MonitorSpec {
            id: m.id.clone(),
            kind: m.kind,
            method: m.method.clone(),
            path: m.path.clone(),
            port: m.port,
            host,
            headers,
            expected_codes,
            expected_codes_text: m.expected_codes.clone(),
            expected_body: m.expected_body.to_lowercase(),
            interval: Duration::from_secs(m.interval),
            timeout: Duration::from_secs(m.timeout),
            consecutive_up: m.consecutive_up.max(1),
            consecutive_down: m.consecutive_down.max(1),
        }
    }
}

/// A pool, validated.
#[derive(Debug, Clone)]
pub struct TypedPool {
    pub id: String,
    pub minimum_origins: usize,
    pub policy: OriginPolicy,
    /// The pool's monitor, as an index into `monitors`.
    pub monitor: Option<usize>,
    /// Per `endpoints[j]`.
    pub endpoints: Vec<TypedEndpoint>,
}

/// An endpoint, validated.
#[derive(Debug, Clone)]
pub struct TypedEndpoint {
    pub name: String,
    /// 0..=1.
    pub weight: f64,
    pub enabled: bool,
    /// `address`: an IP, or a host name resolved at validation if it could be.
    pub addr: OriginAddr,
    /// The `Host` override from `header`, if any.
    pub host: Option<String>,
    /// Origin TLS: its `tls:` over the pool's over the defaults, with the CA file read.
    pub tls: OriginTls,
}

/// A load balancer, validated, with every default applied.
#[derive(Debug, Clone)]
pub struct TypedBalancer {
    /// `name`, lower-cased: how a `Host` is matched against it.
    pub name: String,
    pub steering: SteeringPolicy,
    pub always_use_https: bool,
    pub mode: Affinity,
    pub secure: Secure,
    pub samesite: SameSite,
    /// `session_affinity_attributes.drain_duration`, seconds.
    pub drain_duration: u64,
    pub failover: Failover,
    /// `adaptive_routing.failover_across_pools`.
    pub failover_across_pools: bool,
    pub require_all_headers: bool,
    pub max_sessions: u64,
    /// `default_pools`, as indices into `pools`.
    pub default_pools: Vec<usize>,
    /// `fallback_pool`, or the last default pool.
    pub fallback: usize,
    /// `session_affinity_ttl`, or the mode's default, in seconds.
    pub ttl: u64,
    /// `session_affinity_attributes.headers`, parsed.
    pub session_headers: Vec<SessionHeader>,
    /// `retry_on_status`, as a bitset.
    pub retry_on: RetryStatuses,
}

/// The TTL rules of an affinity mode: its default and allowed range in seconds (SPEC §3.2);
/// `None` for `none`, which pins nothing. The one place these numbers live.
pub fn session_ttl(mode: Affinity) -> Option<(u64, RangeInclusive<u64>)> {
    match mode {
        Affinity::None => None,
        // 23 h, within Cloudflare's cookie range.
        Affinity::Cookie | Affinity::IpCookie => Some((82_800, 1800..=604_800)),
        // 30 min idle, within Cloudflare's header range.
        Affinity::Header => Some((1800, 30..=3600)),
    }
}

impl Validated {
    /// Looks up every endpoint host name (within [`LOOKUP_BUDGET`]) and attaches what resolved;
    /// returns one warning per endpoint that stays unresolved, naming its YAML path.
    pub(super) fn resolve_names(&self) -> Vec<String> {
        let mut unresolved = Vec::new();
        for (i, pool) in self.pools.iter().enumerate() {
            for (j, ep) in pool.endpoints.iter().enumerate() {
                if ep.addr.get().is_none() {
                    unresolved.push((format!("pools[{i}].endpoints[{j}].address"), &ep.addr));
                }
            }
        }
        let names: Vec<&str> = unresolved.iter().map(|(_, a)| a.as_str()).collect();
        // The servers the resolver will ask, when named; else the system's own lookup.
        let servers = self.file.resolver.nameserver_addrs();
        let found: Vec<Result<Vec<SocketAddr>, String>> = if servers.is_empty() {
            lookup_all(&names, LOOKUP_BUDGET)
        } else {
            super::lookup::lookup_blocking(&servers, &names, LOOKUP_BUDGET)
        };
        let mut warnings = Vec::new();
        for ((path, addr), found) in unresolved.into_iter().zip(found) {
            match found {
                Ok(sock) => {
                    addr.attach(sock);
                }
                Err(why) => warnings.push(format!(
                    "{path}: {:?} {why}; the endpoint gets no traffic until it resolves",
                    addr.as_str()
                )),
            }
        }
        warnings
    }
}
