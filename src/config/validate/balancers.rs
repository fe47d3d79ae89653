//! `load_balancers:`: references to pools, affinity rules and their TTL ranges.

use std::collections::HashMap;

use super::super::error::ConfigError;
use super::super::schema::*;
use super::super::typed::{session_ttl, TypedBalancer};
use super::super::values::{RetryStatuses, SessionHeader};

/// One load balancer: its pool references resolved, its affinity rules checked, its session
/// headers parsed; `None` when any of it is wrong (each problem pushed onto `e`).
pub(super) fn load_balancer(
    lb: &LoadBalancer,
    path: &str,
    pools: &HashMap<&str, usize>,
    e: &mut Vec<ConfigError>,
) -> Option<TypedBalancer> {
    let errors_before = e.len();
    let (default_pools, fallback) = pool_refs(lb, path, pools, e);
    let apath = format!("{path}.session_affinity_attributes");
    affinity_rules(lb, path, &apath, e);
    let session_headers = session_headers(&lb.session_affinity_attributes.headers, &apath, e);
    if lb.max_sessions == 0 {
        e.push(ConfigError::invalid(
            format!("{path}.max_sessions"),
            0,
            "must be at least 1",
        ));
    }
    let retry_on = retry_statuses(&lb.retry_on_status, path, e);
    if e.len() > errors_before {
        return None;
    }
    let default_ttl = session_ttl(lb.session_affinity).map_or(0, |(default, _)| default);
    let attrs = &lb.session_affinity_attributes;
    Some(TypedBalancer {
        name: lb.name.to_ascii_lowercase(),
        steering: lb.steering_policy,
        always_use_https: lb.always_use_https,
        mode: lb.session_affinity,
        secure: attrs.secure,
        samesite: attrs.samesite,
        drain_duration: attrs.drain_duration,
        failover: attrs.zero_downtime_failover,
        failover_across_pools: lb.adaptive_routing.failover_across_pools,
        require_all_headers: attrs.require_all_headers,
        max_sessions: lb.max_sessions,
        default_pools,
        fallback: fallback?,
        ttl: lb.session_affinity_ttl.unwrap_or(default_ttl),
        session_headers,
        retry_on,
    })
}

/// `retry_on_status`: every entry a 5xx status, none twice.
fn retry_statuses(codes: &[u16], path: &str, e: &mut Vec<ConfigError>) -> RetryStatuses {
    let mut set = RetryStatuses::default();
    for (i, &code) in codes.iter().enumerate() {
        if let Err(reason) = set.insert(code) {
            e.push(ConfigError::invalid(
                format!("{path}.retry_on_status[{i}]"),
                code,
                reason,
            ));
        }
    }
    set
}

/// `default_pools` and `fallback_pool` as pool indices (the fallback defaults to the last
/// default pool).
fn pool_refs(
    lb: &LoadBalancer,
    path: &str,
    pools: &HashMap<&str, usize>,
    e: &mut Vec<ConfigError>,
) -> (Vec<usize>, Option<usize>) {
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
    (default_pools, fallback)
}

/// The TTL range of the affinity mode, `SameSite=None` only with Secure, and what header
/// affinity needs and refuses.
fn affinity_rules(lb: &LoadBalancer, path: &str, apath: &str, e: &mut Vec<ConfigError>) {
    let attrs = &lb.session_affinity_attributes;
    if let Some(ttl) = lb.session_affinity_ttl {
        let rules = session_ttl(lb.session_affinity);
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
}

/// `headers:` parsed: at most 5 entries, each valid and none twice.
fn session_headers(
    headers: &[String],
    apath: &str,
    e: &mut Vec<ConfigError>,
) -> Vec<SessionHeader> {
    if headers.len() > 5 {
        e.push(ConfigError::invalid(
            format!("{apath}.headers"),
            headers.len(),
            "entries: at most 5 are allowed",
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut parsed_all = Vec::with_capacity(headers.len());
    for (i, h) in headers.iter().enumerate() {
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
                parsed_all.push(parsed);
            }
        }
    }
    parsed_all
}

#[cfg(test)]
mod tests {
    use crate::balancer::fixture::web_ab;
    use crate::config::Config;

    fn errors(balancer: &str) -> Vec<String> {
        match Config::from_yaml(&web_ab(balancer), "test") {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn retry_on_status_is_empty_by_default() {
        let valid = Config::from_yaml(&web_ab(""), "test").unwrap();
        assert!(valid.balancers[0].retry_on.is_empty());
    }

    #[test]
    fn retry_on_status_accepts_5xx_statuses() {
        let valid = Config::from_yaml(&web_ab("    retry_on_status: [502, 503, 504]\n"), "test")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(valid.balancers[0].retry_on.to_vec(), [502, 503, 504]);
    }

    #[test]
    fn retry_on_status_refuses_non_5xx_and_duplicates_naming_the_entry() {
        let errs = errors("    retry_on_status: [503, 429, 200, 600, 503]\n");
        assert_eq!(errs.len(), 4, "{errs:#?}");
        for (i, code) in [(1, 429), (2, 200), (3, 600)] {
            let path = format!("load_balancers[0].retry_on_status[{i}]: {code}");
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&path) && e.contains("500..599")),
                "{path} in {errs:#?}"
            );
        }
        assert!(
            errs.iter().any(
                |e| e.starts_with("load_balancers[0].retry_on_status[4]: 503")
                    && e.contains("twice")
            ),
            "{errs:#?}"
        );
    }

    #[test]
    fn retry_on_status_must_be_a_list_of_numbers() {
        let errs = errors("    retry_on_status: [\"5xx\"]\n");
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("retry_on_status"), "{errs:#?}");
    }
}
