//! Session affinity modes (`session_affinity`). Each mode is a type behind [`Pinning`]: how it
//! keys a request, whether the request's pin still holds, and how a failover re-pins. The router
//! and the failover policy ask the balancer's mode and never match on it, so adding a mode
//! touches one file here plus the schema enum (its YAML name and its TTL rules,
//! `config::session_ttl`).

mod cookie;
mod header;
mod none;

use std::fmt::Debug;

use crate::affinity::header_key::SessionKey;
use crate::affinity::rendezvous::HashKey;
use crate::config::{Affinity, Failover};

use super::decision::{Outcome, PinAction, RequestFacts};
use super::snapshot::{Balancer, EndpointRef, Snapshot};
use super::state::Lifecycle;

/// What a mode makes of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The key the session is placed by when it is placed anew (consistent hashing); `None`
    /// places it by the pool's steering policy.
    pub key: Option<HashKey>,
    pub pin: Pin,
}

/// Whether a request's pin holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// The request's pin holds: it goes to this endpoint.
    Holds(EndpointRef),
    /// No pin, or one that no longer holds: the request is placed anew, for this outcome, and
    /// `action` is done for the endpoint chosen.
    Place { outcome: Outcome, action: PinAction },
}

/// One affinity mode. Implementations are stateless; a balancer's settings come in `lb`.
pub trait Pinning: Send + Sync + Debug {
    /// The request's session key, when this mode keeps sessions by a key of the request's own
    /// (header affinity); computed once per request, at admission.
    fn session_key(
        &self,
        _snap: &Snapshot,
        _lb: &Balancer,
        _facts: &RequestFacts<'_>,
    ) -> Option<SessionKey> {
        None
    }

    /// Where the request's pin sends it, or how to place it (SPEC §3.1–§3.3). `session` is what
    /// [`Pinning::session_key`] gave at admission.
    fn place(
        &self,
        snap: &Snapshot,
        lb: &Balancer,
        facts: &RequestFacts<'_>,
        session: Option<SessionKey>,
        client: HashKey,
        now: u64,
    ) -> Placement;

    /// The pin of a failover retry, given the pin action of the decision that failed. A
    /// session being (re-)pinned anyway stays so, to the endpoint that serves; otherwise the
    /// pin is left alone. A mode whose pins `sticky` moves overrides this.
    fn failover_pin(&self, failed: PinAction, _mode: Failover, _expires: u64) -> PinAction {
        failed
    }
}

/// The mode behind a configured `session_affinity`.
pub fn for_mode(mode: Affinity) -> &'static dyn Pinning {
    match mode {
        Affinity::None => &none::NoAffinity,
        Affinity::Cookie => &cookie::Cookie { by_client: false },
        Affinity::IpCookie => &cookie::Cookie { by_client: true },
        Affinity::Header => &header::HeaderSession,
    }
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
