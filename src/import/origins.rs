//! One origin as one endpoint: its name, which must be a tether name (SPEC §3.7), and its
//! address, weight, switch and Host header.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv6Addr;

use super::cloudflare::{unknown_fields, CfOrigin, CfPool};
use super::read::Origin;
use super::unique_name;
use super::yaml::Endpoint;
use super::{ImportError, Options};
use crate::config::printable;

/// True when every origin of `p` gives its endpoint a name; else each one that does not is in
/// `errs`, at its JSON path (`origins[1].name`, or `.address` when the address names it).
pub fn names_ok(p: &CfPool, at: &Origin, errs: &mut Vec<ImportError>) -> bool {
    let before = errs.len();
    for (i, o) in p.origins.iter().enumerate() {
        if let Some((field, value, reason)) = name_problem(o) {
            let path = format!("origins[{i}].{field}");
            errs.push(at.error(&path, format!("{value:?} {reason}")));
        }
    }
    errs.len() == before
}

/// The field an origin's endpoint name comes from (`name`, else `address`), its value and why
/// it cannot be a name, if it cannot.
fn name_problem(o: &CfOrigin) -> Option<(&'static str, &str, String)> {
    let (field, value) = match o.name.as_deref().filter(|n| !n.trim().is_empty()) {
        Some(name) => ("name", name),
        None => ("address", o.address.as_str()),
    };
    printable::name_problem(value.trim()).map(|reason| (field, value, reason))
}

/// One origin as an endpoint: `address` + `port` joined, Host header kept.
pub fn endpoint(
    o: &CfOrigin,
    i: usize,
    opts: Options,
    disabled_pool: bool,
    names: &mut HashSet<String>,
    notes: &mut Vec<String>,
) -> Endpoint {
    let base = o
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| o.address.clone());
    let name = unique_name(base.trim(), names);
    let at = format!("origins[{i}] {name:?}");
    let port = match o.port.unwrap_or(0) {
        0 if opts.origin_tls => 443,
        0 => 80,
        p => p,
    };
    let host = o.address.trim();
    let address = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<Ipv6Addr>()
    {
        Ok(v6) => format!("[{v6}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    };
    let mut header = BTreeMap::new();
    for (k, v) in o.header.iter().flatten() {
        if k.eq_ignore_ascii_case("host") {
            if let Some(first) = v.first() {
                header.insert("Host".to_string(), vec![first.clone()]);
            }
            if v.len() > 1 {
                notes.push(format!(
                    "{at}: header Host has {} values: only the first is used",
                    v.len()
                ));
            }
        } else {
            notes.push(format!(
                "{at}: header {k:?} is not supported (only Host may be overridden)"
            ));
        }
    }
    if o.virtual_network_id
        .as_deref()
        .is_some_and(|v| !v.is_empty())
    {
        notes.push(format!("{at}: virtual_network_id (Cloudflare Tunnel) is not supported: reached directly at {address}"));
    }
    for field in unknown_fields(&o.other) {
        notes.push(format!(
            "{at}: field {field:?} is not known to this importer"
        ));
    }
    let weight = o.weight.unwrap_or(1.0);
    let weight_ok = weight.clamp(0.0, 1.0);
    if weight_ok != weight {
        notes.push(format!(
            "{at}: weight {weight} is outside 0..1: written as {weight_ok}"
        ));
    }
    Endpoint {
        name,
        address,
        weight: weight_ok,
        enabled: o.enabled.unwrap_or(true) && !disabled_pool,
        header,
    }
}
