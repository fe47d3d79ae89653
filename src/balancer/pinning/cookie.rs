//! `cookie` and `ip_cookie`: the session is pinned by a signed `__cflb` cookie whose lifetime
//! is fixed when it is minted (SPEC §3.1, §3.2). `ip_cookie` places a new session by the
//! client address (consistent hashing), `cookie` by the pool's steering policy.

use crate::affinity::cookies::cflb_values;
use crate::affinity::header_key::SessionKey;
use crate::affinity::rendezvous::HashKey;
use crate::affinity::token::TokenError;
use crate::config::Failover;

use super::super::decision::{Outcome, PinAction, RequestFacts};
use super::super::snapshot::{Balancer, EndpointRef, Snapshot};
use super::{still_serves, Pin, Pinning, Placement};

/// The `cookie` mode, or `ip_cookie` when `by_client`.
#[derive(Debug)]
pub struct Cookie {
    pub by_client: bool,
}

impl Pinning for Cookie {
    fn place(
        &self,
        snap: &Snapshot,
        lb: &Balancer,
        facts: &RequestFacts<'_>,
        _session: Option<SessionKey>,
        client: HashKey,
        now: u64,
    ) -> Placement {
        let pin = match pinned_by_cookie(snap, lb, facts.cookies, now) {
            Ok(target) => Pin::Holds(target),
            Err(outcome) => Pin::Place {
                outcome,
                action: PinAction::Set {
                    expires: now + lb.affinity.ttl,
                },
            },
        };
        Placement {
            key: self.by_client.then_some(client),
            pin,
        }
    }

    /// `sticky` mints a new cookie to the endpoint that served (SPEC §3.4).
    fn failover_pin(&self, failed: PinAction, mode: Failover, expires: u64) -> PinAction {
        match (failed, mode) {
            (PinAction::None, Failover::Sticky) => PinAction::Set { expires },
            (pin, _) => pin,
        }
    }
}

/// How many `__cflb` values of one request are verified (SPEC §3.7): each costs an HMAC, and a
/// client may send hundreds; a browser sends one (two across a path or domain overlap).
pub const MAX_VERIFIED: usize = 3;

/// The endpoint a valid `__cflb` cookie pins to, if it may still serve the session; otherwise
/// why not. The first of the first [`MAX_VERIFIED`] values that verifies is the one honoured;
/// later values are not looked at.
fn pinned_by_cookie(
    snap: &Snapshot,
    lb: &Balancer,
    cookies: &[&[u8]],
    now: u64,
) -> Result<EndpointRef, Outcome> {
    let mut why = Outcome::New;
    for value in cflb_values(cookies).take(MAX_VERIFIED) {
        // A token is base64url, so a value that is not even UTF-8 is simply malformed.
        let verified = std::str::from_utf8(value)
            .map_err(|_| TokenError::Malformed)
            .and_then(|v| snap.keys.verify(&lb.name, v, now));
        match verified {
            Ok(pin) => match lb.by_id.get(&pin.endpoint) {
                Some(&target) => return still_serves(snap, lb, target, now),
                None => why = Outcome::Invalid,
            },
            Err(TokenError::Expired) if why != Outcome::Invalid => why = Outcome::Expired,
            Err(_) => why = Outcome::Invalid,
        }
    }
    Err(why)
}
