//! The per-request context: the snapshot the request reads, its facts, the decision, the
//! endpoints tried, and timings.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balancer::{Addresses, Decision, EndpointRef, EndpointState, Snapshot};

/// How and when the request arrived, kept for later hooks (the router's view of the request
/// is `balancer::RequestFacts`, which borrows it and lives only while routing).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The socket peer.
    pub peer: IpAddr,
    /// The client, after `trusted_proxies`.
    pub client: IpAddr,
    pub tls: bool,
    /// Unix seconds when routing happened.
    pub now: u64,
}

/// Counts a request as in flight at an endpoint until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

impl InFlight {
    pub fn start(state: &Arc<EndpointState>) -> Self {
        state.inflight.fetch_add(1, Relaxed);
        state.requests.fetch_add(1, Relaxed);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

/// Endpoints this request has been sent to, in order.
#[derive(Debug, Default)]
pub struct Attempts {
    pub tried: Vec<EndpointRef>,
    pub inflight: Option<InFlight>,
    /// The address of the current endpoint this request connects to (SPEC §3.10).
    pub address: Option<AddressPick>,
}

/// At most this many of one endpoint's addresses are tried by one request before failover
/// decides (SPEC §3.10): a name answering with many unreachable addresses would otherwise hold
/// the request for one connect timeout each (up to Pingora's 16 retries, 80 s).
pub const MAX_ADDRESSES_TRIED: usize = 4;

/// Which of an endpoint's addresses a request uses: the list it read once (a change by the
/// resolver mid-request does not reorder its attempts) and the position in it.
#[derive(Debug)]
pub struct AddressPick {
    pub target: EndpointRef,
    pub list: Arc<Addresses>,
    pub index: usize,
}

impl Attempts {
    /// The address to connect to for `target`: the one this request is at if it is already on
    /// `target` (a retry after a connect failure moved it on), else the first current one;
    /// `None` while the endpoint has none.
    pub fn address_for(
        &mut self,
        target: EndpointRef,
        state: &EndpointState,
    ) -> Option<SocketAddr> {
        if self.address.as_ref().is_none_or(|p| p.target != target) {
            let list = state.addresses.load()?;
            self.address = Some(AddressPick {
                target,
                list,
                index: 0,
            });
        }
        let pick = self.address.as_ref()?;
        pick.list.list.get(pick.index).copied()
    }

    /// Moves on to the current endpoint's next address after a connect failure; returns the
    /// address that failed and the next one, or `None` when every address was tried, or
    /// [`MAX_ADDRESSES_TRIED`] of them.
    pub fn next_address(&mut self) -> Option<(SocketAddr, SocketAddr)> {
        let pick = self.address.as_mut()?;
        if pick.index + 1 >= MAX_ADDRESSES_TRIED {
            return None;
        }
        let failed = *pick.list.list.get(pick.index)?;
        let next = *pick.list.list.get(pick.index + 1)?;
        pick.index += 1;
        Some((failed, next))
    }

    /// The address the current attempt connects to.
    pub fn current_address(&self) -> Option<SocketAddr> {
        let pick = self.address.as_ref()?;
        pick.list.list.get(pick.index).copied()
    }
}

/// Timings for the access log.
#[derive(Debug)]
pub struct Timing {
    pub started: Instant,
    pub upstream_started: Option<Instant>,
    /// From asking for an upstream connection to having one (TCP connect, or a pooled one).
    pub upstream_connect: Option<Duration>,
    /// The upstream connection came from the pool (no connect).
    pub upstream_reused: bool,
    pub upstream: Option<Duration>,
}

/// The `ProxyHttp::CTX` of tether.
#[derive(Debug)]
pub struct RequestCtx {
    pub snapshot: Option<Arc<Snapshot>>,
    pub facts: Option<Arrival>,
    pub decision: Option<Decision>,
    /// The balancer of a request that tether answered itself (redirect, 503), for metrics.
    pub answered_by: Option<usize>,
    /// tether refused the request and logged it: Pingora's error line would be a duplicate.
    pub refusal_logged: bool,
    pub attempts: Attempts,
    pub timing: Timing,
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx {
            snapshot: None,
            facts: None,
            decision: None,
            answered_by: None,
            refusal_logged: false,
            attempts: Attempts::default(),
            timing: Timing {
                started: Instant::now(),
                upstream_started: None,
                upstream_connect: None,
                upstream_reused: false,
                upstream: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_tries_at_most_four_addresses_of_an_endpoint() {
        let list: Vec<SocketAddr> = (1..=10)
            .map(|i| SocketAddr::from(([127, 0, 0, i], 80)))
            .collect();
        let mut attempts = Attempts {
            address: Some(AddressPick {
                target: EndpointRef {
                    pool: 0,
                    endpoint: 0,
                },
                list: Arc::new(Addresses {
                    written: "many.test:80".into(),
                    list: list.clone(),
                    resolved_at: Some(0),
                }),
                index: 0,
            }),
            ..Attempts::default()
        };
        let mut tried = vec![attempts.current_address().unwrap()];
        while let Some((failed, next)) = attempts.next_address() {
            assert_eq!(Some(&failed), tried.last());
            tried.push(next);
        }
        assert_eq!(tried, list[..MAX_ADDRESSES_TRIED]);
    }
}
