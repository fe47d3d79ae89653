//! The tether config the importer writes: serde types in the order of SPEC §2, serialized by
//! `serde_yaml`, with the report of what was not imported as comments at the top.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// A monitor as tether reads it (SPEC §2 `monitors`).
#[derive(Debug, Clone, Serialize)]
pub struct Monitor {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub port: u16,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_codes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_body: Option<String>,
    pub interval: u64,
    pub timeout: u64,
    pub consecutive_up: u32,
    pub consecutive_down: u32,
}

/// A pool (SPEC §2 `pools`).
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
    pub minimum_origins: u64,
    pub origin_steering: OriginSteering,
    pub endpoints: Vec<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<PoolTls>,
}

/// A pool's origin TLS defaults (SPEC 3.8), only the fields the import sets.
#[derive(Debug, Clone, Serialize)]
pub struct PoolTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OriginSteering {
    pub policy: String,
}

/// An endpoint (Cloudflare: origin).
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub name: String,
    pub address: String,
    pub weight: f64,
    pub enabled: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
}

/// A load balancer (SPEC §2 `load_balancers`).
#[derive(Debug, Clone, Serialize)]
pub struct Balancer {
    pub name: String,
    pub default_pools: Vec<String>,
    pub fallback_pool: String,
    pub steering_policy: &'static str,
    pub session_affinity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_affinity_ttl: Option<u64>,
    pub session_affinity_attributes: Attributes,
    pub adaptive_routing: AdaptiveRouting,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attributes {
    pub samesite: &'static str,
    pub secure: &'static str,
    pub drain_duration: u64,
    pub zero_downtime_failover: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_all_headers: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdaptiveRouting {
    pub failover_across_pools: bool,
}

/// One object of the output with the comment lines written above it (its description).
#[derive(Debug, Clone)]
pub struct Commented<T> {
    pub comments: Vec<String>,
    pub item: T,
}

impl<T> Commented<T> {
    pub fn new(item: T) -> Self {
        Commented {
            comments: Vec::new(),
            item,
        }
    }
}

/// The whole imported configuration.
#[derive(Debug, Default)]
pub struct Imported {
    /// Input files, for the header.
    pub sources: Vec<String>,
    /// What tether does not do, one line each; written at the top and on stderr.
    pub not_imported: Vec<String>,
    pub monitors: Vec<Commented<Monitor>>,
    pub pools: Vec<Commented<Pool>>,
    pub balancers: Vec<Commented<Balancer>>,
}

/// Writes `imported` as a tether YAML file.
pub fn write(imported: &Imported) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    out.push_str("# tether configuration imported from Cloudflare Load Balancing by\n");
    out.push_str("# `tether import cloudflare`");
    for s in &imported.sources {
        let _ = write!(out, " {s}");
    }
    out.push_str("\n# Check it with `tether --config FILE --test`; set TETHER_COOKIE_SECRET before starting.\n#\n");
    if imported.not_imported.is_empty() {
        out.push_str("# Everything in the input was imported.\n");
    } else {
        out.push_str(
            "# NOT IMPORTED (tether has no equivalent, or the value was changed to fit):\n",
        );
        for note in &imported.not_imported {
            let _ = writeln!(out, "#   - {}", one_line(note));
        }
    }
    out.push_str(
        "\n# Where tether listens: Cloudflare's edge did this for you; adjust to your host.\n\
         listeners:\n  - address: 0.0.0.0:8080\n\n\
         # Status page, drain buttons, metrics (loopback only).\n\
         admin:\n  address: 127.0.0.1:9901\n\n\
         # The key that signs the __cflb cookie; the same on every instance.\n\
         cookie_secret: ${TETHER_COOKIE_SECRET}\n",
    );
    section(&mut out, "monitors", &imported.monitors)?;
    section(&mut out, "pools", &imported.pools)?;
    section(&mut out, "load_balancers", &imported.balancers)?;
    Ok(out)
}

fn section<T: Serialize>(
    out: &mut String,
    key: &str,
    items: &[Commented<T>],
) -> Result<(), serde_yaml::Error> {
    if items.is_empty() {
        return Ok(());
    }
    let _ = write!(out, "\n{key}:\n");
    for item in items {
        for c in &item.comments {
            let _ = writeln!(out, "  # {}", one_line(c));
        }
        let yaml = serde_yaml::to_string(&[&item.item])?;
        for line in yaml.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    Ok(())
}

/// A comment must stay on one line whatever the input held.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
