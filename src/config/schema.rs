//! The YAML schema of SPEC §2, as serde types.
//!
//! Every struct refuses unknown fields, and every optional knob has exactly one default, written
//! here beside the field. Semantic checks (ranges, references, duplicates) live in `validate`.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub use super::listener_tls::Tls;
pub use super::secret::{Secret, Secrets};

/// A parsed, validated configuration file. Paths inside it are as written in the file.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSection,
    pub listeners: Vec<Listener>,
    pub admin: Option<Admin>,
    pub limits: Limits,
    /// `None` when the file sets no `cookie_secret`: a random key is generated at start.
    pub cookie_secret: Option<Secrets>,
    pub monitors: Vec<Monitor>,
    pub pools: Vec<PoolConfig>,
    pub load_balancers: Vec<LoadBalancer>,
    pub trusted_proxies: Vec<String>,
    /// Where runtime state lives (SPEC §5); see `config::state`.
    pub state: super::state::StateSection,
    pub access_log: super::AccessLog,
    /// How endpoint host names are looked up at run time (SPEC §3.10); see `config::resolver`.
    pub resolver: super::resolver::ResolverSection,
}

/// A pool with its endpoints parsed.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub pool: Pool,
    pub endpoints: Vec<Endpoint>,
}

/// Process settings, mapped onto Pingora's `ServerConf`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "one")]
    pub threads: usize,
    #[serde(default = "yes")]
    pub work_stealing: bool,
    #[serde(default = "default_pid_file")]
    pub pid_file: String,
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: String,
    #[serde(default = "five")]
    pub grace_period_seconds: u64,
    #[serde(default = "ten")]
    pub graceful_shutdown_timeout_seconds: u64,
    /// Idle upstream connections kept for reuse, per worker thread (Pingora's
    /// `upstream_keepalive_pool_size`); the least recently used one closes beyond it.
    #[serde(default = "default_upstream_keepalive_pool_size")]
    pub upstream_keepalive_pool_size: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            threads: 1,
            work_stealing: true,
            pid_file: default_pid_file(),
            upgrade_sock: default_upgrade_sock(),
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 10,
            upstream_keepalive_pool_size: default_upstream_keepalive_pool_size(),
        }
    }
}

/// One listening socket; with `tls` it terminates TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: String,
    /// One certificate, or a list chosen by SNI (the first is the default); re-read at reload.
    pub tls: Option<super::listener_tls::ListenerTls>,
}

/// The optional admin listener (SPEC §4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "default_admin_address")]
    pub address: String,
    /// Bearer token; `${ENV}` is expanded at load.
    pub token: Option<Secret>,
}

/// Request limits (SPEC §3.7).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_max_header_bytes")]
    pub max_request_header_bytes: usize,
    #[serde(default = "ten")]
    pub request_header_timeout_seconds: u64,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// An idle kept-alive HTTP/1 or HTTP/2 connection is closed after this many seconds.
    #[serde(default = "sixty")]
    pub keepalive_timeout_seconds: u64,
    /// The longest wait for the next bytes of a request body, HTTP/1 and each HTTP/2 stream.
    #[serde(default = "sixty")]
    pub request_body_timeout_seconds: u64,
    /// The longest wait for a client to take the next bytes of a response.
    #[serde(default = "sixty")]
    pub send_timeout_seconds: u64,
    /// Open HTTP/2 streams per client connection, advertised in SETTINGS.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_header_bytes: default_max_header_bytes(),
            request_header_timeout_seconds: 10,
            max_connections: default_max_connections(),
            keepalive_timeout_seconds: 60,
            request_body_timeout_seconds: 60,
            send_timeout_seconds: 60,
            max_concurrent_streams: default_max_concurrent_streams(),
        }
    }
}

/// A health monitor (Cloudflare's field names and defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    pub id: String,
    #[serde(default, rename = "type")]
    pub kind: MonitorKind,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// 0 means the endpoint's own port.
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(default = "default_expected_codes")]
    pub expected_codes: String,
    #[serde(default)]
    pub expected_body: String,
    #[serde(default = "sixty")]
    pub interval: u64,
    #[serde(default = "five")]
    pub timeout: u64,
    #[serde(default = "one_u32")]
    pub consecutive_up: u32,
    #[serde(default = "one_u32")]
    pub consecutive_down: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorKind {
    #[default]
    Http,
    Https,
    Tcp,
}

impl MonitorKind {
    /// Every value, in the order error messages list them.
    pub const ALL: [MonitorKind; 3] = [MonitorKind::Http, MonitorKind::Https, MonitorKind::Tcp];
}

/// A pool of endpoints with one health monitor and one steering policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub id: String,
    pub monitor: Option<String>,
    #[serde(default = "one")]
    pub minimum_origins: usize,
    #[serde(default)]
    pub origin_steering: OriginSteering,
    /// Parsed element by element by `parse`, so that each endpoint's errors carry its own path.
    #[serde(alias = "origins")]
    pub endpoints: Vec<serde_yaml::Value>,
    /// Origin TLS for the pool's endpoints; each endpoint's own `tls:` wins (SPEC §3.8).
    pub tls: Option<super::origin_tls::OriginTlsConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSteering {
    #[serde(default)]
    pub policy: OriginPolicy,
}

/// How a pool picks the endpoint of a new session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginPolicy {
    #[default]
    Random,
    Hash,
    LeastOutstandingRequests,
    LeastConnections,
}

impl OriginPolicy {
    /// Every value, in the order error messages list them.
    pub const ALL: [OriginPolicy; 4] = [
        OriginPolicy::Random,
        OriginPolicy::Hash,
        OriginPolicy::LeastOutstandingRequests,
        OriginPolicy::LeastConnections,
    ];
}

/// One endpoint (Cloudflare: origin) of a pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub name: String,
    pub address: String,
    #[serde(default = "one_f64")]
    pub weight: f64,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub header: BTreeMap<String, Vec<String>>,
    /// Origin TLS; overrides the pool's `tls:` field by field (SPEC §3.8).
    pub tls: Option<super::origin_tls::OriginTlsConfig>,
}

/// A load balancer: the Host it answers and how it pins sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    pub name: String,
    pub default_pools: Vec<String>,
    pub fallback_pool: Option<String>,
    #[serde(default)]
    pub steering_policy: SteeringPolicy,
    #[serde(default)]
    pub always_use_https: bool,
    #[serde(default)]
    pub session_affinity: Affinity,
    pub session_affinity_ttl: Option<u64>,
    #[serde(default)]
    pub session_affinity_attributes: AffinityAttributes,
    #[serde(default)]
    pub adaptive_routing: AdaptiveRouting,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u64,
    /// Statuses whose answers are retried once on another endpoint (SPEC §3.9); empty: never.
    #[serde(default)]
    pub retry_on_status: Vec<u16>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SteeringPolicy {
    #[default]
    Off,
    Random,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Affinity {
    #[default]
    None,
    Cookie,
    IpCookie,
    Header,
}

impl Affinity {
    /// Every value, in the order error messages list them.
    pub const ALL: [Affinity; 4] = [
        Affinity::None,
        Affinity::Cookie,
        Affinity::IpCookie,
        Affinity::Header,
    ];

    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Affinity::None => "none",
            Affinity::Cookie => "cookie",
            Affinity::IpCookie => "ip_cookie",
            Affinity::Header => "header",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffinityAttributes {
    #[serde(default)]
    pub samesite: SameSite,
    #[serde(default)]
    pub secure: Secure,
    #[serde(default)]
    pub drain_duration: u64,
    #[serde(default)]
    pub zero_downtime_failover: Failover,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub require_all_headers: bool,
}

impl Default for AffinityAttributes {
    fn default() -> Self {
        AffinityAttributes {
            samesite: SameSite::Auto,
            secure: Secure::Auto,
            drain_duration: 0,
            zero_downtime_failover: Failover::None,
            headers: Vec::new(),
            require_all_headers: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum SameSite {
    #[default]
    #[serde(alias = "auto")]
    Auto,
    #[serde(alias = "lax")]
    Lax,
    #[serde(alias = "none")]
    None,
    #[serde(alias = "strict")]
    Strict,
}

impl SameSite {
    /// Every value, in the order error messages list them.
    pub const ALL: [SameSite; 4] = [
        SameSite::Auto,
        SameSite::Lax,
        SameSite::None,
        SameSite::Strict,
    ];
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Secure {
    #[default]
    #[serde(alias = "auto")]
    Auto,
    #[serde(alias = "always")]
    Always,
    #[serde(alias = "never")]
    Never,
}

impl Secure {
    /// Every value, in the order error messages list them.
    pub const ALL: [Secure; 3] = [Secure::Auto, Secure::Always, Secure::Never];
}

/// Zero-downtime failover mode (SPEC §3.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failover {
    #[default]
    None,
    Temporary,
    Sticky,
}

impl Failover {
    /// Every value, in the order error messages list them.
    pub const ALL: [Failover; 3] = [Failover::None, Failover::Temporary, Failover::Sticky];
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveRouting {
    #[serde(default)]
    pub failover_across_pools: bool,
}

/// The value of a schema enum written `text` in YAML, read exactly as the config loader reads it;
/// `None` when the loader would refuse it. Writers of YAML (the importer) go through this and
/// [`yaml_name`], so a renamed variant changes what they accept and write with the loader.
pub fn from_yaml_name<T: DeserializeOwned>(text: &str) -> Option<T> {
    serde_yaml::from_value(serde_yaml::Value::String(text.to_string())).ok()
}

/// How a schema enum value is written in YAML (its serde name, e.g. `ip_cookie`).
pub fn yaml_name<T: Serialize>(value: T) -> String {
    match serde_yaml::to_value(value) {
        Ok(serde_yaml::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Every value's YAML name, comma-separated, for error messages (`none, cookie, ip_cookie, header`).
pub fn yaml_names<T: Serialize + Copy>(all: &[T]) -> String {
    let names: Vec<String> = all.iter().map(|v| yaml_name(*v)).collect();
    names.join(", ")
}

fn one() -> usize {
    1
}
fn one_u32() -> u32 {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn five() -> u64 {
    5
}
fn ten() -> u64 {
    10
}
fn sixty() -> u64 {
    60
}
fn default_pid_file() -> String {
    "/tmp/tether.pid".into()
}
fn default_upgrade_sock() -> String {
    "/tmp/tether_upgrade.sock".into()
}
fn default_admin_address() -> String {
    "127.0.0.1:9901".into()
}
fn default_max_header_bytes() -> usize {
    65536
}
fn default_max_connections() -> usize {
    10000
}
fn default_upstream_keepalive_pool_size() -> usize {
    128
}
fn default_max_concurrent_streams() -> u32 {
    100
}
fn default_method() -> String {
    "GET".into()
}
fn default_path() -> String {
    "/".into()
}
fn default_expected_codes() -> String {
    "2xx".into()
}
fn default_max_sessions() -> u64 {
    1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_back<T: Serialize + DeserializeOwned + Copy + PartialEq + std::fmt::Debug>(all: &[T]) {
        for v in all {
            assert_eq!(from_yaml_name::<T>(&yaml_name(*v)), Some(*v), "{v:?}");
        }
    }

    #[test]
    fn every_enum_value_the_importer_writes_reads_back_as_itself() {
        reads_back(&MonitorKind::ALL);
        reads_back(&OriginPolicy::ALL);
        reads_back(&Affinity::ALL);
        reads_back(&SameSite::ALL);
        reads_back(&Secure::ALL);
        reads_back(&Failover::ALL);
        reads_back(&[SteeringPolicy::Off, SteeringPolicy::Random]);
        assert_eq!(
            yaml_names(&Affinity::ALL),
            "none, cookie, ip_cookie, header"
        );
        assert!(Affinity::ALL.iter().all(|a| yaml_name(*a) == a.as_str()));
    }
}
