//! Reading a file into a [`Config`], collecting every error rather than stopping at the first.
//!
//! Serde stops at the first error it meets, so the file is first read as a YAML tree and then
//! each top-level section, and each element of each list, is deserialized on its own: a bad
//! `pools[0]` does not hide a bad `load_balancers[2]`.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use super::error::{ConfigError, ConfigErrors};
use super::schema::*;
use super::state::StoreKind;
use super::typed::Validated;
use super::validate::validate;

const SECTIONS: &[&str] = &[
    "server",
    "listeners",
    "admin",
    "limits",
    "cookie_secret",
    "monitors",
    "pools",
    "load_balancers",
    "trusted_proxies",
    "state",
    "access_log",
    "resolver",
];

impl Config {
    /// Reads, parses and validates `file`; on failure returns every error found.
    pub fn load(file: &Path) -> Result<Validated, ConfigErrors> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigErrors(vec![ConfigError::Unreadable {
                file: file.display().to_string(),
                reason: e.to_string(),
            }])
        })?;
        Self::from_yaml(&text, &file.display().to_string())
    }

    /// Parses and validates YAML text; `origin` names it in syntax errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Validated, ConfigErrors> {
        Self::from_yaml_with_env(text, origin, &|name| std::env::var(name).ok())
    }

    /// As [`Config::from_yaml`], reading `${NAME}` expansions through `env`.
    pub fn from_yaml_with_env(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Validated, ConfigErrors> {
        let syntax = |reason: String| {
            ConfigErrors(vec![ConfigError::Syntax {
                file: origin.to_string(),
                reason,
            }])
        };
        let root: Value = serde_yaml::from_str(text).map_err(|e| syntax(e.to_string()))?;
        let root = match root {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => return Err(syntax("the top level must be a mapping".into())),
        };

        let mut errs = Vec::new();
        for key in root.keys() {
            let name = key.as_str().unwrap_or("?");
            if !SECTIONS.contains(&name) {
                errs.push(ConfigError::schema(
                    name,
                    format!("unknown field, expected one of {}", SECTIONS.join(", ")),
                ));
            }
        }
        let mut config = sections(&root, &mut errs);
        expand_env(&mut config, env, &mut errs);
        // A section that failed to parse is absent, so cross-checks against it would only add
        // noise ("no pool with id ..."): validate only what parsed cleanly.
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        validate(config).map_err(ConfigErrors)
    }
}

/// Every section of the file, each parsed on its own so that one bad section does not hide
/// the others' errors; a section that does not parse is left at its default (with its error).
fn sections(root: &Mapping, errs: &mut Vec<ConfigError>) -> Config {
    let server = one(root, "server", errs).unwrap_or_default();
    let listeners = list::<Listener>(root, "listeners", errs);
    let admin = match root.get("admin") {
        // serde would quote a scalar here, and `admin: <token>` is an easy slip.
        Some(v) if !matches!(v, Value::Mapping(_) | Value::Null) => {
            errs.push(ConfigError::schema(
                "admin",
                "expected a mapping (address, token); the value is not shown",
            ));
            None
        }
        _ => one::<Admin>(root, "admin", errs),
    };
    let limits = one(root, "limits", errs).unwrap_or_default();
    let cookie_secret = one::<Secrets>(root, "cookie_secret", errs);
    if matches!(root.get("cookie_secret"), Some(Value::Null)) {
        // `cookie_secret:` with nothing after it is a mistake, not a request for a random
        // key (leaving the line out is how to ask for one).
        errs.push(ConfigError::schema(
            "cookie_secret",
            "is empty; remove the line to use a random key",
        ));
    }
    let monitors = list::<Monitor>(root, "monitors", errs);
    let pools = list::<Pool>(root, "pools", errs)
        .into_iter()
        .enumerate()
        .map(|(i, pool)| {
            let path = format!("pools[{i}].endpoints");
            let endpoints = elements::<Endpoint>(&pool.endpoints, &path, errs);
            PoolConfig { pool, endpoints }
        })
        .collect();
    let load_balancers = list::<LoadBalancer>(root, "load_balancers", errs);
    let trusted_proxies = list::<String>(root, "trusted_proxies", errs);
    let state = one(root, "state", errs).unwrap_or_default();
    let access_log = one(root, "access_log", errs).unwrap_or_default();
    let resolver = one(root, "resolver", errs).unwrap_or_default();

    Config {
        server,
        listeners,
        admin,
        limits,
        cookie_secret,
        monitors,
        pools,
        load_balancers,
        trusted_proxies,
        state,
        access_log,
        resolver,
    }
}

/// Deserializes one value, prefixing serde's inner path with `path` in any error.
fn at<T: DeserializeOwned>(value: &Value, path: &str, errs: &mut Vec<ConfigError>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = match inner.as_str() {
                "." => path.to_string(),
                s if s.starts_with('[') => format!("{path}{s}"),
                s => format!("{path}.{s}"),
            };
            errs.push(ConfigError::schema(full, e.into_inner().to_string()));
            None
        }
    }
}

fn one<T: DeserializeOwned>(root: &Mapping, key: &str, errs: &mut Vec<ConfigError>) -> Option<T> {
    match root.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => at(v, key, errs),
    }
}

fn list<T: DeserializeOwned>(root: &Mapping, key: &str, errs: &mut Vec<ConfigError>) -> Vec<T> {
    match root.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => elements(items, key, errs),
        Some(_) => {
            errs.push(ConfigError::schema(key, "expected a list"));
            Vec::new()
        }
    }
}

fn elements<T: DeserializeOwned>(
    items: &[Value],
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Vec<T> {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| at(item, &format!("{path}[{i}]"), errs))
        .collect()
}

/// Expands `${NAME}` in the fields that hold secrets; an unset variable is an error, not "".
fn expand_env(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<ConfigError>,
) {
    if let Some(secrets) = &mut config.cookie_secret {
        let expanded: Vec<Secret> = secrets
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, s)| Secret::new(expand(s.expose(), &secrets.path(i), env, errs)))
            .collect();
        *secrets = match secrets {
            Secrets::Many(_) => Secrets::Many(expanded),
            Secrets::One(_) => Secrets::One(expanded.into_iter().next().unwrap_or_default()),
        };
    }
    if let Some(admin) = &mut config.admin {
        if let Some(token) = &admin.token {
            admin.token = Some(Secret::new(expand(
                token.expose(),
                "admin.token",
                env,
                errs,
            )));
        }
    }
    // Only the store in use needs its variable set.
    if let (StoreKind::Redis, Some(redis)) = (config.state.store, &mut config.state.redis) {
        redis.url = Secret::new(expand(redis.url.expose(), "state.redis.url", env, errs));
    }
}

fn expand(
    s: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<ConfigError>,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            errs.push(ConfigError::invalid(path, "\"${\"", "is not closed by '}'"));
            return out;
        };
        let name = &after[..end];
        match env(name).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(&v),
            None => errs.push(ConfigError::schema(
                path,
                format!("environment variable {name} is not set"),
            )),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}
