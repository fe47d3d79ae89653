//! Cloudflare Load Balancing API objects (load balancers, pools, monitors) as serde types.
//!
//! Field names and meanings are those of Cloudflare's published API schema. Every field is
//! optional where the API may omit it or send `null`; fields this importer does not know land in
//! `other` so that they can be reported instead of being dropped silently.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Fields that only describe the object (timestamps, the zone) or matter only for a DNS-only
/// balancer (`ttl`; `proxied: false` is reported itself): nothing to import.
pub const INFORMATIONAL: &[&str] = &[
    "created_on",
    "modified_on",
    "zone_name",
    "disabled_at",
    "ttl",
];

/// A health monitor (`GET /accounts/{account}/load_balancers/monitors`).
#[derive(Debug, Clone, Deserialize)]
pub struct CfMonitor {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub description: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub port: Option<u16>,
    pub header: Option<BTreeMap<String, Vec<String>>>,
    pub expected_codes: Option<String>,
    pub expected_body: Option<String>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub retries: Option<u64>,
    pub consecutive_up: Option<u32>,
    pub consecutive_down: Option<u32>,
    pub follow_redirects: Option<bool>,
    pub allow_insecure: Option<bool>,
    pub probe_zone: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A pool of origins (`GET /accounts/{account}/load_balancers/pools`).
#[derive(Debug, Clone, Deserialize)]
pub struct CfPool {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub minimum_origins: Option<u64>,
    pub monitor: Option<String>,
    pub monitor_group: Option<String>,
    pub origins: Vec<CfOrigin>,
    pub origin_steering: Option<CfOriginSteering>,
    pub notification_email: Option<String>,
    pub notification_filter: Option<Value>,
    pub check_regions: Option<Vec<String>>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub load_shedding: Option<CfLoadShedding>,
    pub networks: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One origin (tether: endpoint) of a pool.
#[derive(Debug, Clone, Deserialize)]
pub struct CfOrigin {
    pub name: Option<String>,
    pub address: String,
    pub enabled: Option<bool>,
    pub weight: Option<f64>,
    pub header: Option<BTreeMap<String, Vec<String>>>,
    pub port: Option<u16>,
    pub virtual_network_id: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CfOriginSteering {
    pub policy: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CfLoadShedding {
    pub default_percent: Option<f64>,
    pub session_percent: Option<f64>,
}

/// A load balancer (`GET /zones/{zone}/load_balancers`); `name` is the hostname it answers.
#[derive(Debug, Clone, Deserialize)]
pub struct CfBalancer {
    pub id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub proxied: Option<bool>,
    pub default_pools: Vec<String>,
    pub fallback_pool: Option<String>,
    pub region_pools: Option<BTreeMap<String, Vec<String>>>,
    pub pop_pools: Option<BTreeMap<String, Vec<String>>>,
    pub country_pools: Option<BTreeMap<String, Vec<String>>>,
    pub steering_policy: Option<String>,
    pub random_steering: Option<CfRandomSteering>,
    pub location_strategy: Option<Value>,
    pub session_affinity: Option<String>,
    pub session_affinity_ttl: Option<u64>,
    pub session_affinity_attributes: Option<CfAttributes>,
    pub adaptive_routing: Option<CfAdaptiveRouting>,
    pub rules: Option<Vec<Value>>,
    pub networks: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CfRandomSteering {
    pub default_weight: Option<f64>,
    pub pool_weights: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CfAttributes {
    pub samesite: Option<String>,
    pub secure: Option<String>,
    pub drain_duration: Option<u64>,
    pub zero_downtime_failover: Option<String>,
    pub headers: Option<Vec<String>>,
    pub require_all_headers: Option<bool>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CfAdaptiveRouting {
    pub failover_across_pools: Option<bool>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Names of `other` fields that carry a value (not `null`, `""`, `[]`, `{}`) and are not
/// [`INFORMATIONAL`]: what the importer must report as not imported.
pub fn unknown_fields(other: &BTreeMap<String, Value>) -> Vec<&str> {
    other
        .iter()
        .filter(|(k, v)| !INFORMATIONAL.contains(&k.as_str()) && !is_empty(v))
        .map(|(k, _)| k.as_str())
        .collect()
}

/// `null`, `""`, `[]` and `{}` say nothing.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}
