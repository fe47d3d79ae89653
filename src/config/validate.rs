//! Semantic checks of SPEC §2 over a parsed [`Config`]: ranges, references, duplicates.
//!
//! Each check names the YAML path of the value it refuses; all problems are returned together.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::address::OriginAddr;
use super::error::ConfigError;
use super::listener_tls::{self, CertKey};
use super::origin_tls::{self, OriginTls};
use super::own_addrs::OwnAddrs;
use super::printable;
use super::schema::*;
use super::typed::{session_ttl, MonitorSpec, TypedBalancer, TypedEndpoint, TypedPool, Validated};
use super::values::{ExpectedCodes, SessionHeader};

/// Checks `config` and returns it with its parsed values, or every semantic error in it.
pub fn validate(config: Config) -> Result<Validated, Vec<ConfigError>> {
    let mut errs = Vec::new();
    let e = &mut errs;
    server(&config.server, e);
    let listener_certs = listeners(&config.listeners, e);
    if let Some(admin) = &config.admin {
        admin_section(admin, e);
    }
    limits(&config.limits, e);
    super::state::validate_state(&config.state, e);
    if let Some(secrets) = &config.cookie_secret {
        if secrets.as_slice().is_empty() {
            e.push(ConfigError::schema("cookie_secret", "the list is empty"));
        }
        for (i, s) in secrets.as_slice().iter().enumerate() {
            if s.is_empty() {
                e.push(ConfigError::schema(secrets.path(i), "is empty"));
            }
        }
    }
    let monitor_ids = unique(
        config.monitors.iter().map(|m| m.id.as_str()),
        "monitors",
        "id",
        "monitor",
        e,
    );
    let monitors: Vec<Option<MonitorSpec>> = config
        .monitors
        .iter()
        .enumerate()
        .map(|(i, m)| monitor(m, &format!("monitors[{i}]"), e))
        .collect();
    let pool_ids = unique(
        config.pools.iter().map(|p| p.pool.id.as_str()),
        "pools",
        "id",
        "pool",
        e,
    );
    let pools: Vec<Option<TypedPool>> = config
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| pool(p, &format!("pools[{i}]"), &monitor_ids, e))
        .collect();
    let names = config
        .load_balancers
        .iter()
        .map(|lb| lb.name.to_ascii_lowercase());
    let names: Vec<String> = names.collect();
    unique(
        names.iter().map(String::as_str),
        "load_balancers",
        "name",
        "load balancer",
        e,
    );
    let balancers: Vec<Option<TypedBalancer>> = config
        .load_balancers
        .iter()
        .enumerate()
        .map(|(i, lb)| load_balancer(lb, &format!("load_balancers[{i}]"), &pool_ids, e))
        .collect();
    let mut trusted_proxies = Vec::with_capacity(config.trusted_proxies.len());
    for (i, cidr) in config.trusted_proxies.iter().enumerate() {
        match parse_cidr(cidr) {
            Some(net) => trusted_proxies.push(net),
            None => e.push(ConfigError::invalid(
                format!("trusted_proxies[{i}]"),
                cidr,
                "is not an IP address or CIDR",
            )),
        }
    }
    // Every `None` above came with an error, so with no error every part is there.
    match (all(monitors), all(pools), all(balancers)) {
        (Some(monitors), Some(pools), Some(balancers)) if errs.is_empty() => {
            let mut valid = Validated {
                file: config,
                monitors,
                pools,
                balancers,
                trusted_proxies,
                listener_certs,
                warnings: Vec::new(),
            };
            valid.warnings = super::warnings::of(&valid);
            // Only a valid config is worth the wait for DNS.
            let unresolved = valid.resolve_names();
            valid.warnings.extend(unresolved);
            // After DNS, so a name that resolves to tether itself is caught too.
            let looping = OwnAddrs::of(&valid.file).refuse(&valid);
            if !looping.is_empty() {
                return Err(looping);
            }
            Ok(valid)
        }
        _ => Err(errs),
    }
}

/// Every part, when validation produced each one.
fn all<T>(parts: Vec<Option<T>>) -> Option<Vec<T>> {
    parts.into_iter().collect()
}

/// Parses a CIDR, or a bare address as a single-host network.
fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Checks that `ids` are names (non-empty, printable: [`printable::name_problem`]) and distinct;
/// returns a map id → index of the first use.
fn unique<'a>(
    ids: impl Iterator<Item = &'a str>,
    list: &str,
    field: &str,
    what: &'static str,
    e: &mut Vec<ConfigError>,
) -> HashMap<&'a str, usize> {
    let mut seen = HashMap::new();
    for (i, id) in ids.enumerate() {
        let path = format!("{list}[{i}].{field}");
        if id.is_empty() {
            e.push(ConfigError::schema(path, "must not be empty"));
            continue;
        }
        // Still counted below: a reference to it is not also reported as unknown.
        if let Some(reason) = printable::name_problem(id) {
            e.push(ConfigError::invalid(&path, format!("{id:?}"), reason));
        }
        if let Some(first) = seen.get(id) {
            let first = format!("{list}[{first}].{field}");
            e.push(ConfigError::Duplicate {
                path,
                what,
                name: id.into(),
                first,
            });
        } else {
            seen.insert(id, i);
        }
    }
    seen
}

fn server(s: &ServerSection, e: &mut Vec<ConfigError>) {
    if !(1..=1024).contains(&s.threads) {
        e.push(ConfigError::invalid(
            "server.threads",
            s.threads,
            "is outside 1..1024",
        ));
    }
    for (field, v) in [("pid_file", &s.pid_file), ("upgrade_sock", &s.upgrade_sock)] {
        if v.is_empty() {
            e.push(ConfigError::schema(
                format!("server.{field}"),
                "must not be empty",
            ));
        }
    }
}

/// Checks the listeners; returns each one's certificates, loaded (`None` for a plain one).
fn listeners(list: &[Listener], e: &mut Vec<ConfigError>) -> Vec<Option<Vec<CertKey>>> {
    if list.is_empty() {
        e.push(ConfigError::schema(
            "listeners",
            "at least one listener is required",
        ));
    }
    let mut seen = HashMap::new();
    for (i, l) in list.iter().enumerate() {
        let path = format!("listeners[{i}].address");
        match l.address.parse::<SocketAddr>() {
            Err(_) => e.push(ConfigError::invalid(
                &path,
                &l.address,
                "is not an ip:port address",
            )),
            Ok(addr) => {
                if let Some(first) = seen.insert(addr, i) {
                    let first = format!("listeners[{first}].address");
                    e.push(ConfigError::Duplicate {
                        path,
                        what: "address",
                        name: l.address.clone(),
                        first,
                    });
                }
            }
        }
    }
    list.iter()
        .enumerate()
        .map(|(i, l)| l.tls.as_ref().and_then(|tls| listener_tls::load(tls, i, e)))
        .collect()
}

/// The admin listener's address, and its token: required off loopback (SPEC §4), where anyone
/// who can reach the port could otherwise drain every endpoint and reload.
fn admin_section(admin: &Admin, e: &mut Vec<ConfigError>) {
    match admin.address.parse::<SocketAddr>() {
        Err(reason) => e.push(ConfigError::invalid(
            "admin.address",
            &admin.address,
            format!("is not an ip:port address ({reason})"),
        )),
        Ok(addr) if !addr.ip().to_canonical().is_loopback() && admin.token.is_none() => {
            e.push(ConfigError::schema(
                "admin.token",
                format!(
                    "is required: admin.address {addr} is not loopback (127.0.0.0/8 or ::1), \
                     so anyone who can reach it could drain endpoints and reload"
                ),
            ));
        }
        Ok(_) => {}
    }
    if admin.token.as_ref().is_some_and(Secret::is_empty) {
        e.push(ConfigError::schema("admin.token", "is empty"));
    }
}

fn limits(l: &Limits, e: &mut Vec<ConfigError>) {
    if !(1024..=1_048_576).contains(&l.max_request_header_bytes) {
        let v = l.max_request_header_bytes;
        e.push(ConfigError::invalid(
            "limits.max_request_header_bytes",
            v,
            "is outside 1024..1048576",
        ));
    }
    if !(1..=3600).contains(&l.request_header_timeout_seconds) {
        let v = l.request_header_timeout_seconds;
        e.push(ConfigError::invalid(
            "limits.request_header_timeout_seconds",
            v,
            "is outside 1..3600",
        ));
    }
    if !(1..=86_400).contains(&l.keepalive_timeout_seconds) {
        let v = l.keepalive_timeout_seconds;
        e.push(ConfigError::invalid(
            "limits.keepalive_timeout_seconds",
            v,
            "is outside 1..86400",
        ));
    }
    for (field, v) in [
        (
            "limits.request_body_timeout_seconds",
            l.request_body_timeout_seconds,
        ),
        ("limits.send_timeout_seconds", l.send_timeout_seconds),
    ] {
        if !(1..=3600).contains(&v) {
            e.push(ConfigError::invalid(field, v, "is outside 1..3600"));
        }
    }
    if !(1..=1000).contains(&l.max_concurrent_streams) {
        let v = l.max_concurrent_streams;
        e.push(ConfigError::invalid(
            "limits.max_concurrent_streams",
            v,
            "is outside 1..1000",
        ));
    }
    if l.max_connections == 0 {
        e.push(ConfigError::invalid(
            "limits.max_connections",
            0,
            "must be at least 1",
        ));
    }
}

fn monitor(m: &Monitor, path: &str, e: &mut Vec<ConfigError>) -> Option<MonitorSpec> {
    let mut expected_codes = Some(ExpectedCodes::default());
    if m.kind != MonitorKind::Tcp {
        if m.method.is_empty() || !m.method.bytes().all(|b| b.is_ascii_uppercase()) {
            e.push(ConfigError::invalid(
                format!("{path}.method"),
                &m.method,
                "is not an HTTP method",
            ));
        }
        if !m.path.starts_with('/') {
            e.push(ConfigError::invalid(
                format!("{path}.path"),
                &m.path,
                "must start with '/'",
            ));
        }
        expected_codes = match ExpectedCodes::parse(&m.expected_codes) {
            Ok(codes) => Some(codes),
            Err(reason) => {
                e.push(ConfigError::invalid(
                    format!("{path}.expected_codes"),
                    &m.expected_codes,
                    reason,
                ));
                None
            }
        };
        header_map(&m.header, &format!("{path}.header"), e);
    }
    if !(1..=3600).contains(&m.interval) {
        e.push(ConfigError::invalid(
            format!("{path}.interval"),
            m.interval,
            "is outside 1..3600",
        ));
    }
    if m.timeout < 1 || m.timeout > m.interval {
        let reason = format!("is outside 1..{} (the interval)", m.interval);
        e.push(ConfigError::invalid(
            format!("{path}.timeout"),
            m.timeout,
            reason,
        ));
    }
    for (field, v) in [
        ("consecutive_up", m.consecutive_up),
        ("consecutive_down", m.consecutive_down),
    ] {
        if v == 0 {
            e.push(ConfigError::invalid(
                format!("{path}.{field}"),
                v,
                "must be at least 1",
            ));
        }
    }
    Some(MonitorSpec::compile(m, expected_codes?))
}

fn header_map(
    h: &std::collections::BTreeMap<String, Vec<String>>,
    path: &str,
    e: &mut Vec<ConfigError>,
) {
    for (name, values) in h {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            e.push(ConfigError::invalid(
                format!("{path}.{name}"),
                name,
                "is not a header name",
            ));
        }
        for (i, v) in values.iter().enumerate() {
            if http::HeaderValue::from_str(v).is_err() {
                e.push(ConfigError::invalid(
                    format!("{path}.{name}[{i}]"),
                    v,
                    "is not a valid header value",
                ));
            }
        }
    }
}

fn pool(
    p: &PoolConfig,
    path: &str,
    monitors: &HashMap<&str, usize>,
    e: &mut Vec<ConfigError>,
) -> Option<TypedPool> {
    let mut monitor = None;
    if let Some(m) = &p.pool.monitor {
        monitor = monitors.get(m.as_str()).copied();
        if monitor.is_none() {
            e.push(ConfigError::UnknownRef {
                path: format!("{path}.monitor"),
                what: "monitor",
                name: m.clone(),
            });
        }
    }
    if p.endpoints.is_empty() {
        e.push(ConfigError::schema(
            format!("{path}.endpoints"),
            "a pool needs at least one endpoint",
        ));
    }
    let min = p.pool.minimum_origins;
    if min == 0 || min > p.endpoints.len().max(1) {
        let reason = format!(
            "is outside 1..{} (the number of endpoints)",
            p.endpoints.len()
        );
        e.push(ConfigError::invalid(
            format!("{path}.minimum_origins"),
            min,
            reason,
        ));
    }
    let list = format!("{path}.endpoints");
    unique(
        p.endpoints.iter().map(|ep| ep.name.as_str()),
        &list,
        "name",
        "endpoint",
        e,
    );
    let pool_ca = p
        .pool
        .tls
        .as_ref()
        .and_then(|tls| origin_tls::validate(tls, &format!("{path}.tls"), e));
    let mut endpoints = Vec::with_capacity(p.endpoints.len());
    for (j, ep) in p.endpoints.iter().enumerate() {
        let path = format!("{list}[{j}]");
        let own_ca = ep
            .tls
            .as_ref()
            .and_then(|tls| origin_tls::validate(tls, &format!("{path}.tls"), e));
        match OriginAddr::parse(&ep.address) {
            Ok(addr) => {
                let host = ep
                    .header
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("host"))
                    .and_then(|(_, v)| v.first().cloned());
                let mut tls = OriginTls::resolve(
                    ep.tls.as_ref(),
                    p.pool.tls.as_ref(),
                    host.as_deref(),
                    &ep.address,
                );
                // The CA list of whichever block named the `ca_path` in effect.
                let own = ep.tls.as_ref().is_some_and(|t| t.ca_path.is_some());
                tls.ca = if own { own_ca } else { pool_ca.clone() };
                endpoints.push(TypedEndpoint { addr, host, tls });
            }
            Err(reason) => e.push(ConfigError::invalid(
                format!("{path}.address"),
                &ep.address,
                reason,
            )),
        }
        if !(0.0..=1.0).contains(&ep.weight) {
            e.push(ConfigError::invalid(
                format!("{path}.weight"),
                format!("{:?}", ep.weight),
                "is outside 0..1",
            ));
        }
        for (name, values) in &ep.header {
            let hpath = format!("{path}.header.{name}");
            if !name.eq_ignore_ascii_case("host") {
                e.push(ConfigError::invalid(
                    hpath,
                    name,
                    "is not supported: only Host may be overridden",
                ));
            } else if values.len() != 1 {
                e.push(ConfigError::schema(hpath, "needs exactly one value"));
            }
        }
        header_map(&ep.header, &format!("{path}.header"), e);
    }
    let complete = endpoints.len() == p.endpoints.len();
    complete.then_some(TypedPool { monitor, endpoints })
}

fn load_balancer(
    lb: &LoadBalancer,
    path: &str,
    pools: &HashMap<&str, usize>,
    e: &mut Vec<ConfigError>,
) -> Option<TypedBalancer> {
    let errors_before = e.len();
    if lb.default_pools.is_empty() {
        e.push(ConfigError::schema(
            format!("{path}.default_pools"),
            "needs at least one pool",
        ));
    }
    let mut default_pools = Vec::with_capacity(lb.default_pools.len());
    for (i, p) in lb.default_pools.iter().enumerate() {
        match pools.get(p.as_str()) {
            Some(&index) => default_pools.push(index),
            None => e.push(ConfigError::UnknownRef {
                path: format!("{path}.default_pools[{i}]"),
                what: "pool",
                name: p.clone(),
            }),
        }
    }
    let mut fallback = default_pools.last().copied();
    if let Some(p) = &lb.fallback_pool {
        fallback = pools.get(p.as_str()).copied();
        if fallback.is_none() {
            e.push(ConfigError::UnknownRef {
                path: format!("{path}.fallback_pool"),
                what: "pool",
                name: p.clone(),
            });
        }
    }
    let attrs = &lb.session_affinity_attributes;
    let apath = format!("{path}.session_affinity_attributes");
    let rules = session_ttl(lb.session_affinity);
    if let Some(ttl) = lb.session_affinity_ttl {
        let range = rules.as_ref().map(|(_, range)| range);
        if let Some(range) = range.filter(|r| !r.contains(&ttl)) {
            let reason = format!(
                "is outside {}..{} for {} affinity",
                range.start(),
                range.end(),
                lb.session_affinity.as_str()
            );
            e.push(ConfigError::invalid(
                format!("{path}.session_affinity_ttl"),
                ttl,
                reason,
            ));
        }
    }
    if attrs.samesite == SameSite::None && attrs.secure == Secure::Never {
        e.push(ConfigError::invalid(
            format!("{apath}.samesite"),
            "None",
            "needs secure Auto or Always: browsers drop SameSite=None cookies that are not Secure",
        ));
    }
    if lb.session_affinity == Affinity::Header {
        if attrs.headers.is_empty() {
            e.push(ConfigError::schema(
                format!("{apath}.headers"),
                "header affinity needs at least one header",
            ));
        }
        if attrs.zero_downtime_failover == Failover::Sticky {
            e.push(ConfigError::invalid(
                format!("{apath}.zero_downtime_failover"),
                "sticky",
                "is not supported with header affinity (as Cloudflare): use temporary",
            ));
        }
    }
    if attrs.headers.len() > 5 {
        e.push(ConfigError::invalid(
            format!("{apath}.headers"),
            attrs.headers.len(),
            "entries: at most 5 are allowed",
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut session_headers = Vec::with_capacity(attrs.headers.len());
    for (i, h) in attrs.headers.iter().enumerate() {
        let hpath = format!("{apath}.headers[{i}]");
        match SessionHeader::parse(h) {
            Err(reason) => e.push(ConfigError::invalid(hpath, format!("{h:?}"), reason)),
            Ok(parsed) => {
                let key = parsed.to_string();
                if let Some(first) = seen.insert(key.clone(), i) {
                    let first = format!("{apath}.headers[{first}]");
                    e.push(ConfigError::Duplicate {
                        path: hpath,
                        what: "header",
                        name: key,
                        first,
                    });
                }
                session_headers.push(parsed);
            }
        }
    }
    if lb.max_sessions == 0 {
        e.push(ConfigError::invalid(
            format!("{path}.max_sessions"),
            0,
            "must be at least 1",
        ));
    }
    if e.len() > errors_before {
        return None;
    }
    let default_ttl = rules.map_or(0, |(default, _)| default);
    Some(TypedBalancer {
        name: lb.name.to_ascii_lowercase(),
        default_pools,
        fallback: fallback?,
        ttl: lb.session_affinity_ttl.unwrap_or(default_ttl),
        session_headers,
    })
}
