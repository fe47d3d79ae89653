//! Choosing an endpoint: the config snapshot, the runtime state of endpoints, `origin_steering`
//! policies, and the routing decision that ties them together.

pub mod addresses;
mod commit;
pub mod decision;
pub mod endpoint;
pub mod failover;
pub mod pinning;
pub mod route;
pub mod snapshot;
pub mod state;
pub mod steering;

#[cfg(test)]
mod route_tests;

#[cfg(test)]
pub mod fixture;

pub use addresses::{AddressCell, Addresses};
pub use decision::{Admitted, Decision, Outcome, PinAction, Refusal, RequestFacts};
pub use failover::{failover, Cause};
pub use route::{admit, decide, route};
pub use snapshot::{Balancer, Endpoint, EndpointRef, Pool, Snapshot};
pub use state::{EndpointState, Lifecycle, RuntimeState};
