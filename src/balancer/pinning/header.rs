//! `header`: the session key is built from configured request headers and cookies, and the
//! session's endpoint is kept in the balancer's session store with an idle TTL; a new session
//! is placed by consistent hashing of its key (SPEC §3.2). No cookie is set.

use crate::affinity::header_key::{session_key, SessionKey};
use crate::affinity::rendezvous::HashKey;

use super::super::decision::{Outcome, PinAction, RequestFacts};
use super::super::snapshot::{Balancer, Snapshot};
use super::{still_serves, Pin, Pinning, Placement};

/// The `header` mode.
#[derive(Debug)]
pub struct HeaderSession;

impl Pinning for HeaderSession {
    fn session_key(
        &self,
        snap: &Snapshot,
        lb: &Balancer,
        facts: &RequestFacts<'_>,
    ) -> Option<SessionKey> {
        let a = &lb.affinity;
        session_key(
            &snap.session_ids,
            &a.headers,
            facts.headers,
            facts.cookies,
            a.require_all_headers,
        )
    }

    fn place(
        &self,
        snap: &Snapshot,
        lb: &Balancer,
        _facts: &RequestFacts<'_>,
        key: Option<SessionKey>,
        _client: HashKey,
        now: u64,
    ) -> Placement {
        let (Some(store), Some(key)) = (&lb.sessions, key) else {
            return Placement {
                key: None,
                pin: Pin::Place {
                    outcome: Outcome::NoSession,
                    action: PinAction::None,
                },
            };
        };
        let found = store.get(key.id).ok_or(Outcome::New);
        let target = found.and_then(|id| lb.by_id.get(&id).copied().ok_or(Outcome::Invalid));
        let pin = match target.and_then(|t| still_serves(snap, lb, t, now)) {
            Ok(target) => Pin::Holds(target),
            Err(outcome) => Pin::Place {
                outcome,
                action: PinAction::Remember { session: key.id },
            },
        };
        Placement {
            key: Some(key.hash),
            pin,
        }
    }
}
