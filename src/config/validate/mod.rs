//! Semantic checks of SPEC §2 over a parsed [`Config`]: ranges, references, duplicates.
//!
//! Each check names the YAML path of the value it refuses; all problems are returned together.

//!
//! One file per section: `process` (server, listeners, admin, limits), `monitors`, `pools`,
//! `balancers`; this file runs them in order and assembles the `Validated` config.

mod balancers;
mod monitors;
mod pools;
mod process;

use balancers::load_balancer;
use monitors::monitor;
use pools::pool;
use process::{admin_section, limits, listeners, server};

use std::collections::HashMap;

use super::error::ConfigError;
use super::own_addrs::OwnAddrs;
use super::printable;
use super::schema::*;
use super::typed::{MonitorSpec, TypedBalancer, TypedPool, Validated};

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
    super::resolver::validate_resolver(&config.resolver, e);
    cookie_secret(&config, e);
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
    let balancers = balancers(&config.load_balancers, &pool_ids, e);
    let trusted_proxies = trusted_proxies(&config.trusted_proxies, e);
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

/// `load_balancers`: names unique (case-insensitive), each balancer checked.
fn balancers(
    list: &[LoadBalancer],
    pool_ids: &HashMap<&str, usize>,
    e: &mut Vec<ConfigError>,
) -> Vec<Option<TypedBalancer>> {
    let names: Vec<String> = list.iter().map(|lb| lb.name.to_ascii_lowercase()).collect();
    unique(
        names.iter().map(String::as_str),
        "load_balancers",
        "name",
        "load balancer",
        e,
    );
    list.iter()
        .enumerate()
        .map(|(i, lb)| load_balancer(lb, &format!("load_balancers[{i}]"), pool_ids, e))
        .collect()
}

/// `cookie_secret`: no empty list, no empty key.
fn cookie_secret(config: &Config, e: &mut Vec<ConfigError>) {
    let Some(secrets) = &config.cookie_secret else {
        return;
    };
    if secrets.as_slice().is_empty() {
        e.push(ConfigError::schema("cookie_secret", "the list is empty"));
    }
    for (i, s) in secrets.as_slice().iter().enumerate() {
        if s.is_empty() {
            e.push(ConfigError::schema(secrets.path(i), "is empty"));
        }
    }
}

/// `trusted_proxies`, parsed; each entry that is neither an address nor a CIDR is an error.
fn trusted_proxies(list: &[String], e: &mut Vec<ConfigError>) -> Vec<ipnet::IpNet> {
    let mut nets = Vec::with_capacity(list.len());
    for (i, cidr) in list.iter().enumerate() {
        match parse_cidr(cidr) {
            Some(net) => nets.push(net),
            None => e.push(ConfigError::invalid(
                format!("trusted_proxies[{i}]"),
                cidr,
                "is not an IP address or CIDR",
            )),
        }
    }
    nets
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
pub(super) fn unique<'a>(
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
