//! `none`: every request is balanced by the pool's `origin_steering`; nothing is pinned.

use crate::affinity::header_key::SessionKey;
use crate::affinity::rendezvous::HashKey;

use super::super::decision::{Outcome, PinAction, RequestFacts};
use super::super::snapshot::{Balancer, Snapshot};
use super::{Pin, Pinning, Placement};

/// The `none` mode.
#[derive(Debug)]
pub struct NoAffinity;

impl Pinning for NoAffinity {
    fn place(
        &self,
        _: &Snapshot,
        _: &Balancer,
        _: &RequestFacts<'_>,
        _: Option<SessionKey>,
        _: HashKey,
        _: u64,
    ) -> Placement {
        Placement {
            key: None,
            pin: Pin::Place {
                outcome: Outcome::NoAffinity,
                action: PinAction::None,
            },
        }
    }
}
