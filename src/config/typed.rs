//! The typed layer over the serde schema: what validation parsed while it checked a file, so
//! that nothing downstream parses (or resolves) a string again. Compiling a snapshot from a
//! [`Validated`] config therefore cannot fail.
//!
//! Each list here runs parallel to the list of the same name in the file (`pools[i]` here is
//! `file.pools[i]` there), so a new schema field needs a line here only when it must be parsed.

use std::ops::{Deref, RangeInclusive};

use super::address::OriginAddr;
use super::schema::{Affinity, Config};
use super::values::{ExpectedCodes, SessionHeader};

/// A config that passed validation, with its parsed values.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The file as written (after `${ENV}` expansion): process settings, status pages and
    /// reload diffs read it.
    pub file: Config,
    /// Per `monitors[i]`.
    pub monitors: Vec<TypedMonitor>,
    /// Per `pools[i]`.
    pub pools: Vec<TypedPool>,
    /// Per `load_balancers[i]`.
    pub balancers: Vec<TypedBalancer>,
    /// `trusted_proxies`, parsed; a bare address is a one-host network.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// What is valid but will not work as written (an endpoint name that does not resolve),
    /// one line each, naming the YAML path: logged at start and reload, printed by `--test`.
    pub warnings: Vec<String>,
}

impl Deref for Validated {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.file
    }
}

/// A monitor's parsed values.
#[derive(Debug, Clone)]
pub struct TypedMonitor {
    /// `expected_codes`; `2xx` for a `tcp` monitor, which sends no request.
    pub expected_codes: ExpectedCodes,
}

/// A pool's parsed values.
#[derive(Debug, Clone)]
pub struct TypedPool {
    /// The pool's monitor, as an index into `monitors`.
    pub monitor: Option<usize>,
    /// Per `endpoints[j]`.
    pub endpoints: Vec<TypedEndpoint>,
}

/// An endpoint's parsed values.
#[derive(Debug, Clone)]
pub struct TypedEndpoint {
    /// `address`: an IP, or a host name resolved at validation if it could be.
    pub addr: OriginAddr,
    /// The `Host` override from `header`, if any.
    pub host: Option<String>,
}

/// A load balancer's parsed values, with every default applied.
#[derive(Debug, Clone)]
pub struct TypedBalancer {
    /// `name`, lower-cased: how a `Host` is matched against it.
    pub name: String,
    /// `default_pools`, as indices into `pools`.
    pub default_pools: Vec<usize>,
    /// `fallback_pool`, or the last default pool.
    pub fallback: usize,
    /// `session_affinity_ttl`, or the mode's default, in seconds.
    pub ttl: u64,
    /// `session_affinity_attributes.headers`, parsed.
    pub session_headers: Vec<SessionHeader>,
}

/// The TTL rules of an affinity mode: its default and allowed range in seconds (SPEC §3.2);
/// `None` for `none`, which pins nothing. The one place these numbers live.
pub fn session_ttl(mode: Affinity) -> Option<(u64, RangeInclusive<u64>)> {
    match mode {
        Affinity::None => None,
        // 23 h, within Cloudflare's cookie range.
        Affinity::Cookie | Affinity::IpCookie => Some((82_800, 1800..=604_800)),
        // 30 min idle, within Cloudflare's header range.
        Affinity::Header => Some((1800, 30..=3600)),
    }
}
