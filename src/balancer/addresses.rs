//! Where an endpoint is reached now: the socket addresses its `address` stands for, owned by the
//! endpoint's runtime state (`EndpointState`) rather than by the config snapshot, so that the
//! resolver (`crate::dns`) can change them without a reload and without moving a session — a
//! session belongs to the endpoint, not to its address (SPEC §3.10).
//!
//! The list is swapped whole (`ArcSwapOption`): a request reads one consistent list and keeps
//! it for all its connect attempts; nothing on the request path takes a lock.

use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use arc_swap::ArcSwapOption;

/// The addresses one endpoint `address` resolved to, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// The `address` as written (`host:port` or an IP literal) these are for: a reload that
    /// changes it starts from the new text's lookup, one that keeps it keeps these.
    pub written: String,
    /// Never empty.
    pub list: Vec<SocketAddr>,
    /// Unix seconds of the lookup that found them; `None` for an IP literal (never looked up).
    pub resolved_at: Option<u64>,
}

/// The cell on an endpoint's runtime state; empty while a name has never resolved.
#[derive(Debug, Default)]
pub struct AddressCell {
    now: ArcSwapOption<Addresses>,
    /// Whether `now` holds addresses: what routing asks of every candidate endpoint, one plain
    /// atomic load rather than the swap's.
    known: AtomicBool,
}

impl AddressCell {
    /// The addresses now, if any: one atomic load, no lock.
    pub fn load(&self) -> Option<Arc<Addresses>> {
        self.now.load_full()
    }

    /// Whether the endpoint can be connected to at all.
    pub fn is_known(&self) -> bool {
        self.known.load(Relaxed)
    }

    /// Replaces the addresses (or clears them: a name kept out of rotation); true when the
    /// list of socket addresses changed.
    pub fn store(&self, new: Option<Addresses>) -> bool {
        // Known only once the list is in, unknown before it goes: whoever saw `known` finds
        // a list (but for a request already routed as a name is kept out, which errs once).
        let new = new.map(Arc::new);
        if new.is_none() {
            self.known.store(false, Relaxed);
        }
        let old = self.now.swap(new.clone());
        if new.is_some() {
            self.known.store(true, Relaxed);
        }
        old.as_ref().map(|a| &a.list) != new.as_ref().map(|a| &a.list)
    }

    /// At a commit: keeps what is known for `written` (the resolver's latest), else takes
    /// `seed`, the lookup validation made (or the IP literal), so that a changed `address`
    /// never keeps the old one's addresses.
    pub fn adopt(&self, written: &str, seed: &[SocketAddr], now: u64) {
        if self
            .now
            .load()
            .as_ref()
            .is_some_and(|a| a.written == written)
        {
            return;
        }
        let literal = written.parse::<SocketAddr>().is_ok();
        let seeded = (!seed.is_empty()).then(|| Addresses {
            written: written.to_string(),
            list: seed.to_vec(),
            resolved_at: (!literal).then_some(now),
        });
        self.store(seeded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_commit_keeps_what_the_resolver_found_for_the_same_address() {
        let cell = AddressCell::default();
        cell.adopt("app.test:80", &[sa("127.0.0.2:80")], 10);
        let first = cell.load().unwrap();
        assert_eq!(first.list, [sa("127.0.0.2:80")]);
        assert_eq!(first.resolved_at, Some(10));
        let later = Addresses {
            written: "app.test:80".into(),
            list: vec![sa("127.0.0.3:80"), sa("127.0.0.4:80")],
            resolved_at: Some(20),
        };
        assert!(cell.store(Some(later.clone())));
        assert!(!cell.store(Some(later.clone())), "same list: no change");
        // A reload of the same text keeps the resolver's two addresses, not validation's one.
        cell.adopt("app.test:80", &[sa("127.0.0.2:80")], 30);
        assert_eq!(*cell.load().unwrap(), later);
        // A changed address starts from its own lookup.
        cell.adopt("other.test:80", &[], 40);
        assert!(!cell.is_known());
        cell.adopt("127.0.0.9:81", &[sa("127.0.0.9:81")], 50);
        assert_eq!(
            cell.load().unwrap().resolved_at,
            None,
            "a literal is not looked up"
        );
    }
}
