//! The routing decision: a plain function of the snapshot, the request's facts and the time.
//! The proxy adapter collects the facts and carries out the decision; nothing here does I/O.

use crate::affinity::rendezvous::HashKey;
use crate::config::SteeringPolicy;

use super::decision::{Admitted, Decision, Outcome, PinAction, Refusal, RequestFacts};
use super::pinning::{self, Pin};
use super::snapshot::{host_name, Balancer, EndpointRef, Snapshot};
use super::steering::{pick_by_key, PickFacts};

/// Decides where a request goes (SPEC §2 `always_use_https`, §3.1, §3.2, §3.3, §3.6): [`admit`]
/// then [`decide`], for a caller with nothing to do between them.
pub fn route(snap: &Snapshot, facts: &RequestFacts<'_>, now: u64) -> Result<Decision, Refusal> {
    let admitted = admit(snap, facts)?;
    decide(snap, facts, &admitted, now)
}

/// Step one of routing: the balancer that answers the request (by `Host`, once per request) and
/// its header session key, if its affinity mode has one (computed once per request). A shared
/// state store is consulted with it before [`decide`]. Refuses an unknown host, and a plain-HTTP
/// request to a balancer with `always_use_https`.
pub fn admit(snap: &Snapshot, facts: &RequestFacts<'_>) -> Result<Admitted, Refusal> {
    let b = snap
        .balancer_for_host(facts.host)
        .ok_or(Refusal::NoBalancer)?;
    let lb = &snap.balancers[b];
    if !facts.tls && lb.always_use_https && redirectable(facts.host) {
        return Err(Refusal::HttpsOnly { balancer: b });
    }
    let session = pinning::for_mode(lb.affinity.mode).session_key(snap, lb, facts);
    Ok(Admitted {
        balancer: b,
        session,
    })
}

/// Step two of routing: where an admitted request goes — its pin if it holds, else a new
/// placement — and what happens to the pin.
pub fn decide(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    admitted: &Admitted,
    now: u64,
) -> Result<Decision, Refusal> {
    let b = admitted.balancer;
    let lb = &snap.balancers[b];
    let pick = PickFacts {
        client: HashKey::of_ip(facts.client_ip),
        random: facts.random,
    };
    let mode = pinning::for_mode(lb.affinity.mode);
    let placement = mode.place(snap, lb, facts, admitted.session, pick.client, now);
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

/// The endpoint a session keyed `key` gets when every endpoint of `lb` serves as the file
/// configures it — health, admin drains and load ignored: the placement every instance with
/// the same config computes alike, before it has seen the session (SPEC §5). With
/// `steering: off` that is the first default pool with enough endpoints enabled in the file to
/// be eligible, else the fallback pool; with random pool steering no pool is agreed on, so it
/// is the key's pick inside `pool`, the pool the session is in.
pub fn first_choice(
    snap: &Snapshot,
    lb: &Balancer,
    key: HashKey,
    pool: usize,
) -> Option<EndpointRef> {
    let in_pool = |pool: usize| {
        let endpoints = &snap.pools[pool].endpoints;
        pick_by_key(endpoints, &|i| endpoints[i].enabled, key)
            .map(|endpoint| EndpointRef { pool, endpoint })
    };
    let could_be_eligible = |&&p: &&usize| {
        let pool = &snap.pools[p];
        pool.endpoints.iter().filter(|e| e.enabled).count() >= pool.minimum_origins
    };
    match lb.steering {
        SteeringPolicy::Random => in_pool(pool),
        SteeringPolicy::Off => lb
            .pools
            .iter()
            .filter(could_be_eligible)
            .find_map(|&p| in_pool(p))
            .or_else(|| in_pool(lb.fallback)),
    }
}

/// True when a session keyed `key` is at its [`first_choice`] on `at`: where any instance would
/// put it without being told, so a shared store need not hold it.
pub fn is_first_choice(snap: &Snapshot, lb: &Balancer, key: HashKey, at: EndpointRef) -> bool {
    first_choice(snap, lb, key, at.pool) == Some(at)
}
