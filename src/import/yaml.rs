//! The tether config the importer writes: serde types in the order of SPEC §2, serialized by
//! `serde_yaml`, with the report of what was not imported as comments at the top. Every enum
//! value is the schema's own type (`config::schema`), so a renamed variant is renamed here too.
//!
//! Everything here comes from a file someone else wrote (SPEC §6): its text may end up in a
//! comment or a value, never in the configuration's structure. Hence one function for comments,
//! scalars quoted by serde_yaml alone, and a check that the text reads back as what was meant.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{
    printable, AdaptiveRouting, Affinity, Failover, MonitorKind, OriginSteering, SameSite, Secure,
    SteeringPolicy,
};

/// A monitor as tether reads it (SPEC §2 `monitors`).
#[derive(Debug, Clone, Serialize)]
pub struct Monitor {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: MonitorKind,
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
    pub steering_policy: SteeringPolicy,
    pub session_affinity: Affinity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_affinity_ttl: Option<u64>,
    pub session_affinity_attributes: Attributes,
    pub adaptive_routing: AdaptiveRouting,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attributes {
    pub samesite: SameSite,
    pub secure: Secure,
    pub drain_duration: u64,
    pub zero_downtime_failover: Failover,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_all_headers: bool,
}

/// One object of the output with the comment lines written above it (its description).
#[derive(Debug, Clone)]
pub struct Commented<T> {
    pub comments: Vec<String>,
    pub item: T,
}

impl<T> Commented<T> {
    /// `item` with one comment naming where it came from: `what` (e.g. `pool`) and Cloudflare's
    /// `id`, after its description when it has one.
    pub fn from_cloudflare(item: T, description: Option<&str>, what: &str, id: &str) -> Self {
        let desc = description.unwrap_or("").trim();
        let comment = if desc.is_empty() {
            format!("Cloudflare {what} {id}")
        } else {
            format!("{desc} (Cloudflare {what} {id})")
        };
        Commented {
            comments: vec![comment],
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

/// Where the imported config listens and serves its admin API: defaults to adjust (docs/import.md).
const LISTENER: &str = "0.0.0.0:8080";
const ADMIN: &str = "127.0.0.1:9901";
/// The cookie key is never in an export; the operator sets this variable.
const COOKIE_SECRET: &str = "${TETHER_COOKIE_SECRET}";

/// Why no YAML was written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
    /// The text would configure something other than what was imported: a bug here, refused
    /// rather than printed.
    #[error("the YAML does not read back as the configuration imported (an importer bug)")]
    NotRoundTrip,
}

/// The configuration the YAML text stands for, as data: what the text must parse back to.
#[derive(Serialize)]
struct Document<'a> {
    listeners: [Address; 1],
    admin: Address,
    cookie_secret: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    monitors: Vec<&'a Monitor>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pools: Vec<&'a Pool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    load_balancers: Vec<&'a Balancer>,
}

#[derive(Serialize)]
struct Address {
    address: &'static str,
}

impl<'a> Document<'a> {
    fn of(imported: &'a Imported) -> Self {
        fn items<T>(list: &[Commented<T>]) -> Vec<&T> {
            list.iter().map(|c| &c.item).collect()
        }
        Document {
            listeners: [Address { address: LISTENER }],
            admin: Address { address: ADMIN },
            cookie_secret: COOKIE_SECRET,
            monitors: items(&imported.monitors),
            pools: items(&imported.pools),
            load_balancers: items(&imported.balancers),
        }
    }
}

/// Writes `imported` as a tether YAML file. Text from the export appears only in comments, each
/// written by [`comment`], and in values serde_yaml quotes; the text is parsed back before it is
/// returned and must equal the configuration imported, so no description, name, key or file name
/// can add to it, whatever characters it holds.
pub fn write(imported: &Imported) -> Result<String, WriteError> {
    let mut out = String::new();
    out.push_str("# tether configuration imported from Cloudflare Load Balancing by\n");
    comment(
        &mut out,
        "",
        &format!("`tether import cloudflare` {}", imported.sources.join(" ")),
    );
    out.push_str("# Check it with `tether --config FILE --test`; set TETHER_COOKIE_SECRET before starting.\n#\n");
    if imported.not_imported.is_empty() {
        out.push_str("# Everything in the input was imported.\n");
    } else {
        out.push_str(
            "# NOT IMPORTED (tether has no equivalent, or the value was changed to fit):\n",
        );
        for note in &imported.not_imported {
            comment(&mut out, "", &format!("  - {note}"));
        }
    }
    let _ = write!(
        out,
        "\n# Where tether listens: Cloudflare's edge did this for you; adjust to your host.\n\
         listeners:\n  - address: {LISTENER}\n\n\
         # Status page, drain buttons, metrics (loopback only).\n\
         admin:\n  address: {ADMIN}\n\n\
         # The key that signs the __cflb cookie; the same on every instance.\n\
         cookie_secret: {COOKIE_SECRET}\n",
    );
    section(&mut out, "monitors", &imported.monitors)?;
    section(&mut out, "pools", &imported.pools)?;
    section(&mut out, "load_balancers", &imported.balancers)?;
    let meant = serde_yaml::to_value(Document::of(imported))?;
    let read: serde_yaml::Value = serde_yaml::from_str(&out)?;
    if read != meant {
        return Err(WriteError::NotRoundTrip);
    }
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
    // A comment line, not a blank one, between sections: a value serde_yaml writes as a block
    // scalar that keeps its trailing line breaks (`|2+`, e.g. a Host of "\n") would take a blank
    // line that follows it into its value.
    let _ = write!(out, "#\n{key}:\n");
    for item in items {
        for c in &item.comments {
            comment(out, "  ", c);
        }
        let yaml = serde_yaml::to_string(&[&item.item])?;
        push_indented(out, &yaml, "  ");
    }
    Ok(())
}

/// One comment line holding `text`, whatever it holds: every control character and every line
/// break YAML knows (`\n`, `\r`, U+0085, U+2028, U+2029) is escaped, so nothing after it can be
/// read as YAML. The only way imported text enters a comment.
fn comment(out: &mut String, indent: &str, text: &str) {
    let _ = writeln!(out, "{indent}# {}", printable::escape(text));
}

/// Appends `yaml` with `indent` before each of its lines, where a line ends at any break YAML
/// knows. serde_yaml writes U+2028 and U+2029 raw inside quoted and literal scalars, followed by
/// its own indentation; indenting only after `\n` would leave the rest of such a scalar less
/// indented than the scalar, and a literal scalar would end there, its rest read as keys.
fn push_indented(out: &mut String, yaml: &str, indent: &str) {
    let mut line_start = true;
    let mut chars = yaml.chars().peekable();
    while let Some(c) = chars.next() {
        if line_start {
            out.push_str(indent);
        }
        out.push(c);
        let crlf = c == '\r' && chars.peek() == Some(&'\n');
        line_start = matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}') && !crlf;
    }
}
