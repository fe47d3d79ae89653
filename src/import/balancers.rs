//! Load balancers, field by field: pool ids rewritten to names, affinity settings carried over,
//! steering tether does not do (geo, proximity, rules …) reported.

use super::cloudflare::{unknown_fields, CfAttributes, CfBalancer};
use super::pools::PoolIds;
use super::read::{Export, Located, Origin};
use super::yaml::{Attributes, Balancer, Commented, Imported};
use super::ImportError;
use crate::config::{
    from_yaml_name, printable, session_ttl, yaml_name, yaml_names, AdaptiveRouting, Affinity,
    Failover, SameSite, Secure, SessionHeader, SteeringPolicy,
};

/// Maps every load balancer that is enabled.
pub fn balancers(
    export: &Export,
    pools: &PoolIds,
    out: &mut Imported,
    errs: &mut Vec<ImportError>,
) {
    let mut seen = std::collections::HashSet::new();
    let mut hosts = std::collections::HashSet::new();
    for Located { at, item: lb } in &export.balancers {
        let key = lb.id.clone().unwrap_or_else(|| lb.name.clone());
        if !seen.insert(key) {
            continue; // the same balancer exported twice (several files)
        }
        let what = format!("load balancer {:?} ({at})", lb.name);
        let mut notes = Vec::new();
        let host = lb.name.trim().to_ascii_lowercase();
        if lb.enabled != Some(false) && !hosts.insert(host) {
            let note = "another enabled balancer answers the same hostname: not written";
            out.not_imported.push(format!("{what}: {note}"));
            continue;
        }
        let errs_before = errs.len();
        let b = balancer(lb, at, pools, &mut notes, errs);
        let disabled = lb.enabled == Some(false);
        if disabled {
            notes.push("is disabled in Cloudflare: not written".into());
        }
        out.not_imported
            .extend(notes.into_iter().map(|n| format!("{what}: {n}")));
        if disabled || errs.len() > errs_before {
            continue;
        }
        let id = lb.id.as_deref().unwrap_or("?");
        let c = Commented::from_cloudflare(b, lb.description.as_deref(), "load balancer", id);
        out.balancers.push(c);
    }
}

fn balancer(
    lb: &CfBalancer,
    at: &Origin,
    pools: &PoolIds,
    notes: &mut Vec<String>,
    errs: &mut Vec<ImportError>,
) -> Balancer {
    if let Some(reason) = printable::name_problem(lb.name.trim()) {
        errs.push(at.error("name", format!("{:?} {reason}", lb.name)));
    }
    if lb.default_pools.is_empty() {
        errs.push(at.error("default_pools", "is empty"));
    }
    let mut pool = |id: &str, path: String| match pools.get(id) {
        Some(name) => name.clone(),
        None => {
            let reason = format!("pool {id:?} is defined in no input file (export GET /accounts/{{account}}/load_balancers/pools too)");
            errs.push(at.error(&path, reason));
            id.to_string()
        }
    };
    let default_pools: Vec<String> = lb
        .default_pools
        .iter()
        .enumerate()
        .map(|(i, id)| pool(id, format!("default_pools[{i}]")))
        .collect();
    let fallback_pool = match lb.fallback_pool.as_deref().filter(|f| !f.is_empty()) {
        Some(id) => pool(id, "fallback_pool".into()),
        None => default_pools.last().cloned().unwrap_or_default(),
    };
    steering_notes(lb, notes);
    let affinity = match lb.session_affinity.as_deref().unwrap_or("") {
        "" => Affinity::None,
        text => from_yaml_name(text).unwrap_or_else(|| {
            let all = yaml_names(&Affinity::ALL);
            let reason = format!("{text:?} is not a session affinity ({all})");
            errs.push(at.error("session_affinity", reason));
            Affinity::None
        }),
    };
    let empty = CfAttributes::default();
    let a = lb.session_affinity_attributes.as_ref().unwrap_or(&empty);
    let (affinity, attributes) = attributes(a, affinity, at, notes, errs);
    let ttl = match (affinity, lb.session_affinity_ttl) {
        (Affinity::None, _) | (_, None) => None,
        (mode, Some(ttl)) => {
            let range = session_ttl(mode).map_or(ttl..=ttl, |(_, range)| range);
            let ok = ttl.clamp(*range.start(), *range.end());
            if ok != ttl {
                let mode = mode.as_str();
                notes.push(format!("session_affinity_ttl {ttl} is outside {}..{} for {mode} affinity: written as {ok}", range.start(), range.end()));
            }
            Some(ok)
        }
    };
    let adaptive = lb.adaptive_routing.clone().unwrap_or_default();
    for field in unknown_fields(&adaptive.other) {
        notes.push(format!("adaptive_routing.{field} is not supported"));
    }
    Balancer {
        name: lb.name.trim().to_string(),
        default_pools,
        fallback_pool,
        steering_policy: steering(lb, notes),
        session_affinity: affinity,
        session_affinity_ttl: ttl,
        session_affinity_attributes: attributes,
        adaptive_routing: AdaptiveRouting {
            failover_across_pools: adaptive.failover_across_pools.unwrap_or(false),
        },
    }
}

/// `steering_policy`: tether does `off` (default_pools in order) and `random`.
fn steering(lb: &CfBalancer, notes: &mut Vec<String>) -> SteeringPolicy {
    match lb.steering_policy.as_deref().unwrap_or("") {
        "" | "off" => SteeringPolicy::Off,
        "random" => {
            if let Some(rs) = &lb.random_steering {
                let weights = rs.pool_weights.as_ref().is_some_and(|w| !w.is_empty());
                if weights || rs.default_weight.is_some_and(|w| w != 1.0) {
                    notes.push("random_steering weights are not supported: pools are picked with equal chance".into());
                }
            }
            SteeringPolicy::Random
        }
        other => {
            let what = match other {
                "geo" => "geo steering",
                "dynamic_latency" => "dynamic latency steering",
                "proximity" => "proximity steering",
                "least_outstanding_requests" | "least_connections" => {
                    "pool-level least-load steering"
                }
                _ => "this steering policy",
            };
            notes.push(format!("steering_policy {other:?} ({what}) is not supported: pools are tried in default_pools order (off)"));
            SteeringPolicy::Off
        }
    }
}

/// Geo pools, rules and the other things a balancer can do that tether does not.
fn steering_notes(lb: &CfBalancer, notes: &mut Vec<String>) {
    let geo = [
        ("region_pools", &lb.region_pools),
        ("pop_pools", &lb.pop_pools),
        ("country_pools", &lb.country_pools),
    ];
    for (field, map) in geo {
        if let Some(map) = map.as_ref().filter(|m| !m.is_empty()) {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            notes.push(format!(
                "{field} ({}) is not supported (geo steering): default_pools serve every client",
                keys.join(", ")
            ));
        }
    }
    for (i, rule) in lb.rules.iter().flatten().enumerate() {
        let name = rule.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        notes.push(format!(
            "rules[{i}] {name:?} is not supported (load balancing rules)"
        ));
    }
    if lb.proxied == Some(false) {
        notes.push("proxied: false (DNS-only) has no equivalent: tether always proxies".into());
    }
    if let Some(loc) = lb
        .location_strategy
        .as_ref()
        .filter(|v| !super::cloudflare::is_empty(v))
    {
        let mode = loc.get("mode").and_then(|m| m.as_str()).unwrap_or("pop");
        let ecs = loc
            .get("prefer_ecs")
            .and_then(|m| m.as_str())
            .unwrap_or("proximity");
        if mode != "pop" || ecs != "proximity" {
            notes.push("location_strategy is not supported (no geo or proximity steering)".into());
        }
    }
    if let Some(n) = lb
        .networks
        .as_ref()
        .filter(|n| n.iter().any(|x| x != "cloudflare"))
    {
        notes.push(format!("networks {n:?} are not supported"));
    }
    for field in unknown_fields(&lb.other) {
        notes.push(format!("field {field:?} is not known to this importer"));
    }
}

/// `session_affinity_attributes`, adjusted where tether (as Cloudflare) refuses a combination.
/// Returns the affinity, which falls back to `none` for header affinity without headers.
fn attributes(
    a: &CfAttributes,
    mut affinity: Affinity,
    at: &Origin,
    notes: &mut Vec<String>,
    errs: &mut Vec<ImportError>,
) -> (Affinity, Attributes) {
    let path = "session_affinity_attributes";
    let mut pick_err = |field: &str, text: &str, all: String| {
        let reason = format!("{text:?} is not one of {all}");
        errs.push(at.error(&format!("{path}.{field}"), reason));
    };
    let samesite = pick(a.samesite.as_deref(), &SameSite::ALL).unwrap_or_else(|text| {
        pick_err("samesite", text, yaml_names(&SameSite::ALL));
        SameSite::Auto
    });
    let mut secure = pick(a.secure.as_deref(), &Secure::ALL).unwrap_or_else(|text| {
        pick_err("secure", text, yaml_names(&Secure::ALL));
        Secure::Auto
    });
    let mut failover =
        pick(a.zero_downtime_failover.as_deref(), &Failover::ALL).unwrap_or_else(|text| {
            pick_err("zero_downtime_failover", text, yaml_names(&Failover::ALL));
            Failover::None
        });
    if samesite == SameSite::None && secure == Secure::Never {
        notes.push(
            "samesite None with secure Never: browsers drop such cookies; written with secure Auto"
                .into(),
        );
        secure = Secure::Auto;
    }
    let mut headers = Vec::new();
    for (i, h) in a.headers.iter().flatten().enumerate() {
        match SessionHeader::parse(h) {
            Ok(_) if headers.len() < 5 => headers.push(h.clone()),
            Ok(_) => notes.push(format!(
                "{path}.headers[{i}] {h:?}: at most 5 headers are used"
            )),
            Err(reason) => notes.push(format!("{path}.headers[{i}] {h:?} {reason}: left out")),
        }
    }
    if affinity == Affinity::Header {
        if headers.is_empty() {
            notes.push("session_affinity header without usable headers: written as none".into());
            affinity = Affinity::None;
        } else if failover == Failover::Sticky {
            notes.push("zero_downtime_failover sticky is not supported with header affinity: written as temporary".into());
            failover = Failover::Temporary;
        }
    }
    for field in unknown_fields(&a.other) {
        notes.push(format!("{path}.{field} is not supported"));
    }
    let attributes = Attributes {
        samesite,
        secure,
        drain_duration: a.drain_duration.unwrap_or(0),
        zero_downtime_failover: failover,
        headers,
        require_all_headers: a.require_all_headers.unwrap_or(false),
    };
    (affinity, attributes)
}

/// The value of `all` whose YAML name is `text`, ignoring ASCII case as Cloudflare's API does;
/// the first of `all` (the default) when there is no text; `Err(text)` when none matches.
fn pick<'t, T: serde::Serialize + Copy>(text: Option<&'t str>, all: &[T]) -> Result<T, &'t str> {
    let text = text.unwrap_or("").trim();
    if text.is_empty() {
        return Ok(all[0]);
    }
    all.iter()
        .copied()
        .find(|v| yaml_name(*v).eq_ignore_ascii_case(text))
        .ok_or(text)
}
