//! The header-session store: which endpoint each header session is pinned to.
//!
//! Bounded (least recently used go first when full), each session expiring after its idle TTL,
//! and concurrent without a global lock — all of which `moka` does well, so it does it here.

use std::time::Duration;

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::EndpointId;

/// A session's endpoint, and when a shared store last confirmed it (ms on the store's clock;
/// 0 = never). The embedded store ignores the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub endpoint: EndpointId,
    pub synced_ms: u64,
}

/// One balancer's header sessions.
#[derive(Debug)]
pub struct SessionStore {
    cache: Cache<u128, Pin>,
    ttl: Duration,
    capacity: u64,
}

impl SessionStore {
    /// A store of at most `capacity` sessions that each expire `ttl` after their last use.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_idle(ttl)
            .eviction_policy(EvictionPolicy::lru())
            .build();
        SessionStore {
            cache,
            ttl,
            capacity,
        }
    }

    /// The endpoint of session `id`, refreshing its idle timer.
    pub fn get(&self, id: u128) -> Option<EndpointId> {
        self.cache.get(&id).map(|p| p.endpoint)
    }

    /// Pins session `id` to `endpoint` (a new session, or a re-pin).
    pub fn pin(&self, id: u128, endpoint: EndpointId) {
        self.pin_synced(id, endpoint, 0);
    }

    /// The pin of session `id` with its sync stamp, refreshing its idle timer.
    pub fn get_pin(&self, id: u128) -> Option<Pin> {
        self.cache.get(&id)
    }

    /// Pins session `id` to `endpoint`, confirmed by a shared store at `synced_ms`.
    pub fn pin_synced(&self, id: u128, endpoint: EndpointId, synced_ms: u64) {
        self.cache.insert(
            id,
            Pin {
                endpoint,
                synced_ms,
            },
        );
    }

    /// Drops session `id`: the next request places it anew.
    pub fn forget(&self, id: u128) {
        self.cache.invalidate(&id);
    }

    /// Every session held now: (session id, endpoint). For state hand-over and the state file.
    pub fn entries(&self) -> Vec<(u128, EndpointId)> {
        self.cache
            .iter()
            .map(|(id, pin)| (*id, pin.endpoint))
            .collect()
    }

    /// Sessions held now (approximate while evictions are pending).
    pub fn count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// True when this store was built with these limits.
    pub fn has_limits(&self, ttl: Duration, capacity: u64) -> bool {
        self.ttl == ttl && self.capacity == capacity
    }

    /// A store with new limits holding this store's sessions (a reload that changed them).
    pub fn resized(&self, ttl: Duration, capacity: u64) -> SessionStore {
        let next = SessionStore::new(ttl, capacity);
        for (id, pin) in self.cache.iter() {
            next.cache.insert(*id, pin);
        }
        next
    }

    /// Applies pending evictions now; the cache otherwise does it lazily.
    pub fn sync(&self) {
        self.cache.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_kept_and_refreshed() {
        let s = SessionStore::new(Duration::from_secs(60), 10);
        s.pin(1, EndpointId(7));
        assert_eq!(s.get(1), Some(EndpointId(7)));
        s.pin(1, EndpointId(8));
        assert_eq!(s.get(1), Some(EndpointId(8)));
        assert_eq!(s.get(2), None);
    }

    #[test]
    fn idle_sessions_expire() {
        let s = SessionStore::new(Duration::from_millis(150), 10);
        s.pin(1, EndpointId(7));
        s.pin(2, EndpointId(8));
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(60));
            assert_eq!(s.get(1), Some(EndpointId(7)), "use keeps a session alive");
        }
        assert_eq!(s.get(2), None, "an idle session expires");
    }

    #[test]
    fn full_store_evicts_least_recently_used() {
        let s = SessionStore::new(Duration::from_secs(60), 3);
        for id in 1..=3 {
            s.pin(id, EndpointId(id as u64));
        }
        s.sync();
        assert_eq!(s.get(1), Some(EndpointId(1)));
        s.pin(4, EndpointId(4));
        s.sync();
        assert!(s.count() <= 3, "bounded: {}", s.count());
        assert_eq!(s.get(2), None, "least recently used goes first");
        assert_eq!(s.get(1), Some(EndpointId(1)));
        assert_eq!(s.get(4), Some(EndpointId(4)));
    }

    #[test]
    fn resizing_keeps_sessions() {
        let s = SessionStore::new(Duration::from_secs(60), 10);
        s.pin(1, EndpointId(7));
        let t = s.resized(Duration::from_secs(30), 20);
        assert_eq!(t.get(1), Some(EndpointId(7)));
        assert!(t.has_limits(Duration::from_secs(30), 20));
    }
}
