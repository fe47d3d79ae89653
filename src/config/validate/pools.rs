//! `pools:` and their endpoints: addresses, weights, Host overrides, origin TLS.

use std::collections::HashMap;

use super::super::address::OriginAddr;
use super::super::error::ConfigError;
use super::super::origin_tls::{self, OriginTls};
use super::super::schema::*;
use super::super::typed::{TypedEndpoint, TypedPool};
use super::monitors::header_map;
use super::unique;

/// One pool: its monitor reference, its endpoint count rules and each endpoint; `None` when an
/// endpoint could not be parsed (each problem pushed onto `e`).
pub(super) fn pool(
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
    let endpoints: Vec<TypedEndpoint> = p
        .endpoints
        .iter()
        .enumerate()
        .filter_map(|(j, ep)| endpoint(p, ep, &format!("{list}[{j}]"), pool_ca.as_ref(), e))
        .collect();
    let complete = endpoints.len() == p.endpoints.len();
    complete.then_some(TypedPool {
        id: p.pool.id.clone(),
        minimum_origins: p.pool.minimum_origins,
        policy: p.pool.origin_steering.policy,
        monitor,
        endpoints,
    })
}

/// One endpoint of pool `p` at `path`: its address parsed, its origin TLS resolved over the
/// pool's (with the CA list of whichever block named the `ca_path` in effect), its weight and
/// Host override checked. `None` when its address does not parse.
fn endpoint(
    p: &PoolConfig,
    ep: &Endpoint,
    path: &str,
    pool_ca: Option<&std::sync::Arc<pingora::protocols::tls::CaType>>,
    e: &mut Vec<ConfigError>,
) -> Option<TypedEndpoint> {
    let own_ca = ep
        .tls
        .as_ref()
        .and_then(|tls| origin_tls::validate(tls, &format!("{path}.tls"), e));
    let addr = OriginAddr::parse(&ep.address).map_err(|reason| {
        e.push(ConfigError::invalid(
            format!("{path}.address"),
            &ep.address,
            reason,
        ))
    });
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
    let addr = addr.ok()?;
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
    let own = ep.tls.as_ref().is_some_and(|t| t.ca_path.is_some());
    tls.ca = if own { own_ca } else { pool_ca.cloned() };
    Some(TypedEndpoint {
        name: ep.name.clone(),
        weight: ep.weight,
        enabled: ep.enabled,
        addr,
        host,
        tls,
    })
}
