//! One endpoint as a snapshot holds it: its address and settings, compiled once, and its runtime
//! state, which outlives the snapshot. Steering policies and the router read it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::affinity::EndpointId;
use crate::config::OriginAddr;
use crate::tls::origin::Origin;

use super::state::{EndpointState, Lifecycle};

/// Where an endpoint sits in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointRef {
    pub pool: usize,
    pub endpoint: usize,
}

/// One endpoint with everything the request path needs precomputed.
#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    pub id: EndpointId,
    /// `address` as written, with validation's lookup as the seed of `state.addresses`; where
    /// the endpoint is reached now is `state.addresses` (runtime, kept up by `crate::dns`).
    pub addr: OriginAddr,
    pub weight: f64,
    /// `enabled` as the file says; a runtime drain lives in `state`.
    pub enabled: bool,
    /// The `Host` to send upstream instead of the client's.
    pub host: Option<String>,
    /// `pool/name`, for logs.
    pub label: String,
    pub state: Arc<EndpointState>,
    /// How it is reached: the prebuilt peer (plain or TLS) and its TLS checks (SPEC §3.8).
    pub origin: Origin,
}

impl Endpoint {
    /// Enabled in the file and not drained at runtime.
    pub fn enabled_now(&self) -> bool {
        self.enabled && !self.state.admin_drained()
    }

    /// Serving, draining or drained, given the balancer's drain duration.
    pub fn lifecycle(&self, drain_duration: u64, now: u64) -> Lifecycle {
        self.state
            .lifecycle(self.enabled_now(), drain_duration, now)
    }

    /// Its address is known and its monitor (if any) says healthy.
    pub fn healthy(&self) -> bool {
        self.state.addresses.is_known() && self.state.healthy()
    }

    /// The address a monitor checks: the first of the current ones.
    pub fn first_address(&self) -> Option<SocketAddr> {
        self.state
            .addresses
            .load()
            .and_then(|a| a.list.first().copied())
    }

    /// May take a new session: healthy, enabled, and with weight.
    pub fn takes_new(&self) -> bool {
        self.enabled_now() && self.healthy() && self.weight > 0.0
    }
}
