//! `origin_steering`: how a pool picks the endpoint of a new session. Each policy is a type
//! behind [`Steering`], so adding one touches neither the router nor the proxy.

use std::sync::atomic::Ordering::Relaxed;

use crate::affinity::rendezvous::{self, HashKey};
use crate::config::OriginPolicy;

use super::endpoint::Endpoint;

/// Per-request inputs a policy may use.
#[derive(Debug, Clone, Copy)]
pub struct PickFacts {
    /// The client address's hash key.
    pub client: HashKey,
    /// A fresh random number for this request.
    pub random: u64,
}

/// A policy that picks one endpoint among those `usable` says may take a new session.
pub trait Steering: Send + Sync + std::fmt::Debug {
    /// The index of the chosen endpoint, or `None` when no usable endpoint has weight.
    fn pick(
        &self,
        endpoints: &[Endpoint],
        usable: &dyn Fn(usize) -> bool,
        facts: PickFacts,
    ) -> Option<usize>;
}

/// The policy object for a configured `origin_steering.policy`, over endpoints of these weights.
pub fn policy(p: OriginPolicy, weights: &[f64]) -> Box<dyn Steering> {
    match p {
        OriginPolicy::Random => Box::new(WeightedRandom::new(weights)),
        OriginPolicy::Hash => Box::new(ClientHash),
        // Over HTTP/1 every in-flight request holds one upstream connection and idle pooled
        // connections cost the endpoint nothing, so both count in-flight requests.
        OriginPolicy::LeastOutstandingRequests | OriginPolicy::LeastConnections => {
            Box::new(LeastOutstanding)
        }
    }
}

/// A uniform float in [0, 1) from the top 53 bits of `r`.
pub fn unit(r: u64) -> f64 {
    (r >> 11) as f64 / (1u64 << 53) as f64
}

/// `random`: each endpoint with probability proportional to its weight.
///
/// One draw over every endpoint's weight (binary search of the running sums made at load, so
/// O(log n)); only when the drawn endpoint cannot take the session does it fall back to a draw
/// over the usable ones, O(n). Both together still give each usable endpoint a chance
/// proportional to its weight: P(i) = w_i/W + (W_unusable/W)(w_i/W_usable) = w_i/W_usable.
#[derive(Debug)]
pub struct WeightedRandom {
    /// `cumulative[i]` is the sum of the positive weights of endpoints `0..=i`.
    cumulative: Vec<f64>,
}

impl WeightedRandom {
    /// The policy for endpoints of these weights, in order.
    pub fn new(weights: &[f64]) -> Self {
        let cumulative = weights
            .iter()
            .scan(0.0, |sum, &w| {
                *sum += w.max(0.0);
                Some(*sum)
            })
            .collect();
        WeightedRandom { cumulative }
    }

    /// The draw over usable endpoints only: two passes.
    fn pick_usable(
        endpoints: &[Endpoint],
        usable: &dyn Fn(usize) -> bool,
        r: f64,
    ) -> Option<usize> {
        let candidates =
            || (0..endpoints.len()).filter(|&i| usable(i) && endpoints[i].weight > 0.0);
        let total: f64 = candidates().map(|i| endpoints[i].weight).sum();
        if total <= 0.0 {
            return None;
        }
        let mut target = r * total;
        let mut last = None;
        for i in candidates() {
            target -= endpoints[i].weight;
            last = Some(i);
            if target < 0.0 {
                return Some(i);
            }
        }
        last
    }
}

impl Steering for WeightedRandom {
    fn pick(
        &self,
        endpoints: &[Endpoint],
        usable: &dyn Fn(usize) -> bool,
        facts: PickFacts,
    ) -> Option<usize> {
        let r = unit(facts.random);
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        if self.cumulative.len() == endpoints.len() && total > 0.0 {
            let i = self.cumulative.partition_point(|&c| c <= r * total);
            if i < endpoints.len() && endpoints[i].weight > 0.0 && usable(i) {
                return Some(i);
            }
        }
        // A fresh number for the second draw, so it does not correlate with the first.
        Self::pick_usable(endpoints, usable, unit(facts.random.rotate_left(32)))
    }
}

/// `hash`: weighted rendezvous hashing of the client address.
#[derive(Debug)]
pub struct ClientHash;

impl Steering for ClientHash {
    fn pick(
        &self,
        endpoints: &[Endpoint],
        usable: &dyn Fn(usize) -> bool,
        facts: PickFacts,
    ) -> Option<usize> {
        pick_by_key(endpoints, usable, facts.client)
    }
}

/// Rendezvous pick by `key` among usable endpoints; shared by `hash`, `ip_cookie` and `header`.
pub fn pick_by_key(
    endpoints: &[Endpoint],
    usable: &dyn Fn(usize) -> bool,
    key: HashKey,
) -> Option<usize> {
    let candidates = (0..endpoints.len())
        .filter(|&i| usable(i))
        .map(|i| (i, endpoints[i].id.0, endpoints[i].weight));
    rendezvous::pick(key, candidates)
}

/// `least_outstanding_requests`: the fewest in-flight requests per unit of weight; ties at random.
#[derive(Debug)]
pub struct LeastOutstanding;

impl Steering for LeastOutstanding {
    fn pick(
        &self,
        endpoints: &[Endpoint],
        usable: &dyn Fn(usize) -> bool,
        facts: PickFacts,
    ) -> Option<usize> {
        let n = endpoints.len();
        let start = (facts.random % n.max(1) as u64) as usize;
        let mut best: Option<(f64, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let e = &endpoints[i];
            if !usable(i) || e.weight <= 0.0 {
                continue;
            }
            let load = (e.state.inflight.load(Relaxed) as f64 + 1.0) / e.weight;
            if best.is_none_or(|(b, _)| load < b) {
                best = Some((load, i));
            }
        }
        best.map(|(_, i)| i)
    }
}
