//! The `state:` section (SPEC §2, §5): where runtime state beyond the file lives — in-process
//! (`embedded`, optionally kept in a file across restarts) or in Redis, shared by every instance.
//!
//! The Redis URL may carry a password: it is a [`Secret`], and every error here and every log
//! line about the store shows only its host and port.

use std::fmt;

use serde::Deserialize;

use super::error::ConfigError;
use super::secret::Secret;

/// Which store holds admin drains, drain clocks and header sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In-process, as a single instance needs (the default).
    #[default]
    Embedded,
    /// Shared by every instance that uses the same Redis.
    Redis,
}

impl StoreKind {
    /// The name used in the YAML and in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Embedded => "embedded",
            StoreKind::Redis => "redis",
        }
    }
}

/// `state:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    #[serde(default)]
    pub store: StoreKind,
    /// Embedded store only: admin drains and header sessions are kept here across restarts.
    pub file: Option<String>,
    pub redis: Option<RedisSection>,
}

/// `state.redis:`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://[:password@]host:port/db` or `rediss://` for TLS; `${ENV}` is expanded at load.
    /// Never printed (see [`RedisSection::address`]).
    pub url: Secret,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// One operation's budget on the request path.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_key_prefix() -> String {
    "tether:".to_string()
}

fn default_timeout_ms() -> u64 {
    50
}

/// The longest `timeout_ms` accepted: past it a slow Redis would hold requests for seconds.
pub const MAX_REDIS_TIMEOUT_MS: u64 = 5000;

impl RedisSection {
    /// `host:port` of the URL, safe to log (no scheme, user, password or database).
    pub fn address(&self) -> String {
        redis_address(self.url.expose()).unwrap_or_else(|| "(unparsable address)".to_string())
    }

    /// True for `rediss://` (TLS).
    pub fn tls(&self) -> bool {
        self.url.expose().starts_with("rediss://")
    }
}

impl fmt::Debug for RedisSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSection")
            .field("url", &format_args!("[redacted] ({})", self.address()))
            .field("key_prefix", &self.key_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// `host:port` of a `redis://` or `rediss://` URL (port 6379 when absent), or `None` when the
/// URL is not one.
pub fn redis_address(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return None;
    }
    let port_ok = |p: &str| p.parse::<u16>().is_ok();
    let has_port = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").is_some_and(|(_, p)| port_ok(p)),
        None => host_port.rsplit_once(':').is_some_and(|(_, p)| port_ok(p)),
    };
    Some(if has_port {
        host_port.to_string()
    } else {
        format!("{host_port}:6379")
    })
}

/// Checks `state:`; errors name the YAML path and never show the URL. A section the chosen
/// store does not use (`redis:` with `embedded`, `file` with `redis`) is allowed, as in SPEC
/// §2's example, and only reported by [`unused_parts`].
pub fn validate_state(s: &StateSection, errs: &mut Vec<ConfigError>) {
    if s.store == StoreKind::Redis && s.redis.is_none() {
        errs.push(ConfigError::schema(
            "state.redis",
            "is required with `store: redis` (at least `url`)",
        ));
    }
    if s.file.as_deref() == Some("") {
        errs.push(ConfigError::schema("state.file", "is empty"));
    }
    if let (StoreKind::Redis, Some(r)) = (s.store, &s.redis) {
        if redis_address(r.url.expose()).is_none() {
            errs.push(ConfigError::schema(
                "state.redis.url",
                "is not a redis:// or rediss:// URL with a host (value not shown: it may hold a password)",
            ));
        }
        if r.timeout_ms == 0 || r.timeout_ms > MAX_REDIS_TIMEOUT_MS {
            errs.push(ConfigError::invalid(
                "state.redis.timeout_ms",
                r.timeout_ms.to_string(),
                format!("must be 1..{MAX_REDIS_TIMEOUT_MS}"),
            ));
        }
    }
}

/// The parts of `state:` the chosen store ignores, one sentence each (logged at start).
pub fn unused_parts(s: &StateSection) -> Vec<&'static str> {
    let mut out = Vec::new();
    if s.store == StoreKind::Embedded && s.redis.is_some() {
        out.push("state.redis is ignored with `store: embedded`");
    }
    if s.store == StoreKind::Redis && s.file.is_some() {
        out.push("state.file is ignored with `store: redis` (the state lives in Redis)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_never_shows_the_password() {
        assert_eq!(
            redis_address("redis://:hunter2@10.0.0.1:6380/0").as_deref(),
            Some("10.0.0.1:6380")
        );
        assert_eq!(
            redis_address("rediss://user:pw@cache.internal").as_deref(),
            Some("cache.internal:6379")
        );
        assert_eq!(
            redis_address("redis://[::1]:7000").as_deref(),
            Some("[::1]:7000")
        );
        assert_eq!(
            redis_address("redis://[::1]").as_deref(),
            Some("[::1]:6379")
        );
        assert_eq!(redis_address("http://x:1"), None);
        assert_eq!(redis_address("redis://"), None);
        let r = RedisSection {
            url: Secret::new("redis://:hunter2@127.0.0.1:6379"),
            key_prefix: "t:".into(),
            timeout_ms: 50,
        };
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("127.0.0.1:6379"),
            "{shown}"
        );
    }

    fn load(state: &str, env: Option<&str>) -> Result<crate::config::Config, String> {
        let yaml = format!(
            "listeners: [{{ address: \"127.0.0.1:8080\" }}]\n\
             pools: [{{ id: web, endpoints: [{{ name: a, address: \"127.0.0.1:9001\" }}] }}]\n\
             load_balancers: [{{ name: \"*\", default_pools: [web] }}]\n{state}"
        );
        crate::config::Config::from_yaml_with_env(&yaml, "test", &|_| env.map(str::to_string))
            .map(|v| v.file)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn state_section_is_checked_with_yaml_paths_and_no_secret() {
        let c = load("", None).unwrap();
        assert_eq!(c.state.store, StoreKind::Embedded);
        // SPEC §2's own example: embedded, with a redis section it does not use.
        let spec = "state:\n  store: embedded\n  file: /tmp/s.json\n  redis:\n    url: ${TETHER_REDIS_URL}\n";
        assert!(load(spec, None).is_ok());
        let redis = |url: &str, extra: &str| {
            format!("state:\n  store: redis\n  redis:\n    url: \"{url}\"\n{extra}")
        };
        let ok = load(
            &redis("${U}", "    timeout_ms: 20\n"),
            Some("rediss://:pw@h:1"),
        )
        .unwrap();
        assert_eq!(
            ok.state.redis.as_ref().unwrap().url.expose(),
            "rediss://:pw@h:1"
        );
        assert_eq!(ok.state.redis.as_ref().unwrap().key_prefix, "tether:");
        let e = load(&redis("${U}", ""), None).unwrap_err();
        assert!(
            e.contains("state.redis.url") && e.contains("not set"),
            "{e}"
        );
        let e = load(&redis("http://:hunter2@h:1", ""), None).unwrap_err();
        assert!(
            e.contains("state.redis.url") && !e.contains("hunter2"),
            "{e}"
        );
        let e = load(&redis("redis://h:1", "    timeout_ms: 0\n"), None).unwrap_err();
        assert!(e.contains("state.redis.timeout_ms"), "{e}");
        let e = load("state:\n  store: redis\n", None).unwrap_err();
        assert!(e.contains("state.redis"), "{e}");
        let e = load("state:\n  store: memcached\n", None).unwrap_err();
        assert!(e.contains("state.store"), "{e}");
        let e = load("state:\n  stroe: redis\n", None).unwrap_err();
        assert!(e.contains("state"), "{e}");
    }
}
