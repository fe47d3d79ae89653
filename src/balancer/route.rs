//! The routing decision: a plain function of the snapshot, the request's facts and the time.
//! The proxy adapter collects the facts and carries out the decision; nothing here does I/O.

use std::net::IpAddr;

use http::HeaderMap;

use crate::affinity::rendezvous::HashKey;
use crate::config::SteeringPolicy;

use super::pinning::Pin;
use super::snapshot::{host_name, Balancer, EndpointRef, Snapshot};
use super::steering::{pick_by_key, PickFacts};

/// What the router needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The `Host` header (or the authority of an absolute or HTTP/2 target).
    pub host: &'a str,
    pub client_ip: IpAddr,
    /// The raw values of every `Cookie` header, in order.
    pub cookies: &'a [&'a [u8]],
    /// All request headers, for `header` affinity.
    pub headers: &'a HeaderMap,
    /// A fresh random number for steering.
    pub random: u64,
    /// The request arrived over TLS.
    pub tls: bool,
}

/// What happened to the request's session, as the access log and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The balancer has no affinity (`session_affinity: none`); named "none".
    NoAffinity,
    /// No affinity cookie or header session yet: a first visit.
    New,
    /// A valid pin was honoured.
    Kept,
    /// The request carries none of the headers of `header` affinity: balanced, no session.
    NoSession,
    /// The cookie was authentic but expired.
    Expired,
    /// The cookie was malformed, forged, or named an endpoint that no longer exists.
    Invalid,
    /// The pinned endpoint is unhealthy: re-pinned.
    Unhealthy,
    /// The pinned endpoint is drained past its drain duration: re-pinned.
    Drained,
    /// Failed over without changing the pin.
    FailoverTemporary,
    /// Failed over and re-pinned.
    FailoverSticky,
}

impl Outcome {
    /// Every outcome, in declaration order: `outcome as usize` indexes it.
    pub const ALL: [Outcome; 10] = [
        Outcome::NoAffinity,
        Outcome::New,
        Outcome::Kept,
        Outcome::NoSession,
        Outcome::Expired,
        Outcome::Invalid,
        Outcome::Unhealthy,
        Outcome::Drained,
        Outcome::FailoverTemporary,
        Outcome::FailoverSticky,
    ];

    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NoAffinity => "none",
            Outcome::New => "new",
            Outcome::NoSession => "no-session",
            Outcome::Kept => "kept",
            Outcome::Expired => "expired",
            Outcome::Invalid => "invalid",
            Outcome::Unhealthy => "unhealthy",
            Outcome::Drained => "drained",
            Outcome::FailoverTemporary => "failover-temporary",
            Outcome::FailoverSticky => "failover-sticky",
        }
    }
}

/// What the response must do about the client's pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinAction {
    /// No affinity, or nothing to change.
    None,
    /// Mint a new pin to the chosen endpoint that lasts until `expires` (unix seconds).
    Set { expires: u64 },
    /// Pin header session `session` to the chosen endpoint (a new session or a re-pin).
    Remember { session: u128 },
}

/// Where a request goes and what happens to its pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub balancer: usize,
    pub target: EndpointRef,
    pub pin: PinAction,
    pub outcome: Outcome,
    /// The key the session is placed by, in the modes that place sessions by consistent
    /// hashing (`ip_cookie`: the client address; `header`: the session key); a failover places
    /// the session by it too (SPEC §3.2).
    pub key: Option<HashKey>,
}

/// Why a request is not forwarded: tether answers it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No balancer answers this Host: 404, nothing forwarded.
    NoBalancer,
    /// A plain-HTTP request to a balancer with `always_use_https`: 301 to https.
    HttpsOnly { balancer: usize },
    /// No usable endpoint in any pool: 503.
    NoEndpoint { balancer: usize },
}

impl Refusal {
    /// The balancer that answered, when one did.
    pub fn balancer(self) -> Option<usize> {
        match self {
            Refusal::NoBalancer => None,
            Refusal::HttpsOnly { balancer } | Refusal::NoEndpoint { balancer } => Some(balancer),
        }
    }
}

/// Decides where a request goes (SPEC §2 `always_use_https`, §3.1, §3.2, §3.3, §3.6). The
/// balancer is looked up once, here; its affinity mode says whether the request's pin holds.
pub fn route(snap: &Snapshot, facts: &RequestFacts<'_>, now: u64) -> Result<Decision, Refusal> {
    let b = snap
        .balancer_for_host(facts.host)
        .ok_or(Refusal::NoBalancer)?;
    let lb = &snap.balancers[b];
    if !facts.tls && lb.always_use_https && redirectable(facts.host) {
        return Err(Refusal::HttpsOnly { balancer: b });
    }
    let pick = PickFacts {
        client: HashKey::of_ip(facts.client_ip),
        random: facts.random,
    };
    let placement = lb.affinity.pinning.place(snap, lb, facts, pick.client, now);
    let (target, pin, outcome) = match placement.pin {
        Pin::Holds(target) => (target, PinAction::None, Outcome::Kept),
        Pin::Place { outcome, action } => {
            let target = pick_new(snap, lb, pick, placement.key, &[])
                .ok_or(Refusal::NoEndpoint { balancer: b })?;
            (target, action, outcome)
        }
    };
    Ok(Decision {
        balancer: b,
        target,
        pin,
        outcome,
        key: placement.key,
    })
}

/// True when a plain-HTTP request to `host` can be redirected to https: its host name is
/// usable in a `Location` (not empty, no whitespace or `/`). Otherwise it is served as it is.
fn redirectable(host: &str) -> bool {
    let name = host_name(host);
    !name.is_empty() && !name.bytes().any(|b| b.is_ascii_whitespace() || b == b'/')
}

/// Picks the endpoint of a new session (SPEC §3.6): the first eligible pool of `default_pools`
/// (or a random one), else the fallback pool; inside it, the pool's steering policy or, when the
/// session has a `key`, rendezvous hashing of that key. Endpoints in `exclude` are never chosen.
pub fn pick_new(
    snap: &Snapshot,
    lb: &Balancer,
    facts: PickFacts,
    key: Option<HashKey>,
    exclude: &[EndpointRef],
) -> Option<EndpointRef> {
    let in_pool = |pool: usize| pick_in_pool(snap, pool, facts, key, exclude);
    let eligible = |&&pool: &&usize| snap.pools[pool].eligible();
    let n = lb.pools.iter().filter(eligible).count();
    if n > 0 {
        let start = match lb.steering {
            SteeringPolicy::Off => 0,
            SteeringPolicy::Random => (facts.random % n as u64) as usize,
        };
        let ordered = lb.pools.iter().filter(eligible).cycle().skip(start).take(n);
        for &pool in ordered {
            if let Some(found) = in_pool(pool) {
                return Some(found);
            }
        }
    }
    in_pool(lb.fallback)
}

/// Picks a new session's endpoint inside one pool: rendezvous hashing of `key` when the session
/// has one, else the pool's steering policy; only endpoints that take new sessions and are not
/// in `exclude`.
pub fn pick_in_pool(
    snap: &Snapshot,
    pool: usize,
    facts: PickFacts,
    key: Option<HashKey>,
    exclude: &[EndpointRef],
) -> Option<EndpointRef> {
    let p = &snap.pools[pool];
    let usable = |i: usize| {
        p.endpoints[i].takes_new() && !exclude.contains(&EndpointRef { pool, endpoint: i })
    };
    let endpoint = match key {
        Some(k) => pick_by_key(&p.endpoints, &usable, k),
        None => p.steering.pick(&p.endpoints, &usable, facts),
    }?;
    Some(EndpointRef { pool, endpoint })
}
