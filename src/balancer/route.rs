//! The routing decision: a plain function of the snapshot, the request's facts and the time.
//! The proxy adapter collects the facts and carries out the decision; nothing here does I/O.

use std::net::IpAddr;

use http::HeaderMap;

use crate::affinity::cookies::cflb_values;
use crate::affinity::header_key::session_key;
use crate::affinity::rendezvous::HashKey;
use crate::affinity::token::TokenError;
use crate::config::{Affinity, SteeringPolicy};

use super::snapshot::{Balancer, EndpointRef, Snapshot};
use super::state::Lifecycle;
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
}

/// What happened to the request's session, as the access log and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The balancer has no affinity.
    Unpinned,
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
    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Unpinned => "none",
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

/// Why a request cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No balancer answers this Host: 404, nothing forwarded.
    NoBalancer,
    /// No usable endpoint in any pool: 503.
    NoEndpoint { balancer: usize },
}

/// Decides where a request goes (SPEC §3.1, §3.2, §3.3, §3.6).
pub fn route(snap: &Snapshot, facts: &RequestFacts<'_>, now: u64) -> Result<Decision, Refusal> {
    let b = snap
        .balancer_for_host(facts.host)
        .ok_or(Refusal::NoBalancer)?;
    let lb = &snap.balancers[b];
    let pick = PickFacts {
        client: HashKey::of_ip(facts.client_ip),
        random: facts.random,
    };
    let decide = |outcome, key, pin| {
        let target =
            pick_new(snap, lb, pick, key, &[]).ok_or(Refusal::NoEndpoint { balancer: b })?;
        Ok(Decision {
            balancer: b,
            target,
            pin,
            outcome,
            key,
        })
    };
    let kept = |target, key| {
        Ok(Decision {
            balancer: b,
            target,
            pin: PinAction::None,
            outcome: Outcome::Kept,
            key,
        })
    };
    match lb.affinity.mode {
        Affinity::None => decide(Outcome::Unpinned, None, PinAction::None),
        Affinity::Cookie | Affinity::IpCookie => {
            let key = (lb.affinity.mode == Affinity::IpCookie).then_some(pick.client);
            match pinned_by_cookie(snap, lb, facts.cookies, now) {
                Ok(target) => kept(target, key),
                Err(outcome) => decide(
                    outcome,
                    key,
                    PinAction::Set {
                        expires: now + lb.affinity.ttl,
                    },
                ),
            }
        }
        Affinity::Header => {
            let a = &lb.affinity;
            let (Some(store), Some(key)) = (
                &lb.sessions,
                session_key(
                    &a.headers,
                    facts.headers,
                    facts.cookies,
                    a.require_all_headers,
                ),
            ) else {
                return decide(Outcome::NoSession, None, PinAction::None);
            };
            let found = store.get(key.id).ok_or(Outcome::New);
            let target = found.and_then(|id| lb.pins.get(&id).copied().ok_or(Outcome::Invalid));
            match target.and_then(|t| still_serves(snap, lb, t, now)) {
                Ok(target) => kept(target, Some(key.hash)),
                Err(outcome) => decide(
                    outcome,
                    Some(key.hash),
                    PinAction::Remember { session: key.id },
                ),
            }
        }
    }
}

/// The endpoint a valid `__cflb` cookie pins to, if it may still serve the session; otherwise
/// why not. The first cookie that verifies is the one honoured.
fn pinned_by_cookie(
    snap: &Snapshot,
    lb: &Balancer,
    cookies: &[&[u8]],
    now: u64,
) -> Result<EndpointRef, Outcome> {
    let mut why = Outcome::New;
    for value in cflb_values(cookies) {
        // A token is base64url, so a value that is not even UTF-8 is simply malformed.
        let verified = std::str::from_utf8(value)
            .map_err(|_| TokenError::Malformed)
            .and_then(|v| snap.keys.verify(&lb.name, v, now));
        match verified {
            Ok(pin) => match lb.pins.get(&pin.endpoint) {
                Some(&target) => return still_serves(snap, lb, target, now),
                None => why = Outcome::Invalid,
            },
            Err(TokenError::Expired) if why != Outcome::Invalid => why = Outcome::Expired,
            Err(_) => why = Outcome::Invalid,
        }
    }
    Err(why)
}

/// `target` if a pinned session may still use it: healthy, and enabled or within its drain
/// (SPEC §3.3, §3.5); otherwise why it must be re-pinned.
fn still_serves(
    snap: &Snapshot,
    lb: &Balancer,
    target: EndpointRef,
    now: u64,
) -> Result<EndpointRef, Outcome> {
    let e = snap.endpoint(target);
    if !e.healthy() {
        return Err(Outcome::Unhealthy);
    }
    match e.lifecycle(lb.affinity.drain_duration, now) {
        Lifecycle::Serving | Lifecycle::Draining { .. } => Ok(target),
        Lifecycle::Drained => Err(Outcome::Drained),
    }
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
