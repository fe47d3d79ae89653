//! The header-session store: which endpoint each header session is pinned to.
//!
//! Bounded by `max_sessions`, each session expiring after its idle TTL, sharded so that no lock
//! is global, and compact: about 58 bytes a session at one million (bench/README.md, "Header
//! sessions"), where moka took 243–355. When full, a new session is admitted only in place of
//! one the frequency sketch has seen less often (TinyLFU), so a flood of one-request sessions
//! never evicts a session in use. No crate offers that at this size: `table` and `sketch` do it.

mod sketch;
mod table;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use table::{hash_of, Found, Shard, TICK_MS};

use super::EndpointId;

/// A session's endpoint, and when a shared store last confirmed it (ms on the store's clock;
/// 0 = never). The embedded store ignores the stamp; the store keeps it to a tenth of a
/// second, rounded down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub endpoint: EndpointId,
    pub synced_ms: u64,
}

/// Shards at most, and sessions per shard at least before the store is split further.
const MAX_SHARDS: usize = 64;
const MIN_PER_SHARD: u64 = 1024;

/// One balancer's header sessions.
#[derive(Debug)]
pub struct SessionStore {
    shards: Box<[Mutex<Shard>]>,
    /// Where the store's clock starts; times are ticks since then, from 1.
    epoch: Instant,
    ttl: Duration,
    capacity: u64,
}

impl SessionStore {
    /// A store of at most `capacity` sessions that each expire `ttl` after their last use.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let shards = (capacity / MIN_PER_SHARD).clamp(1, MAX_SHARDS as u64);
        let shards = shards.next_power_of_two().min(MAX_SHARDS as u64) as usize;
        let per = usize::try_from(capacity.div_ceil(shards as u64)).unwrap_or(usize::MAX);
        SessionStore {
            shards: (0..shards).map(|_| Mutex::new(Shard::new(per))).collect(),
            epoch: Instant::now(),
            ttl,
            capacity,
        }
    }

    /// The endpoint of session `id`, refreshing its idle timer.
    pub fn get(&self, id: u128) -> Option<EndpointId> {
        self.get_pin(id).map(|p| p.endpoint)
    }

    /// Pins session `id` to `endpoint` (a new session, or a re-pin).
    pub fn pin(&self, id: u128, endpoint: EndpointId) {
        self.pin_synced(id, endpoint, 0);
    }

    /// The pin of session `id` with its sync stamp, refreshing its idle timer. Every lookup,
    /// hit or miss, counts towards the session's admission.
    pub fn get_pin(&self, id: u128) -> Option<Pin> {
        let h = hash_of(id);
        match self.shard(h).get(id, h, self.now(), self.ttl_ticks()) {
            Found::Live(pin) => Some(pin),
            Found::Expired | Found::Absent => None,
        }
    }

    /// Pins session `id` to `endpoint`, confirmed by a shared store at `synced_ms`. A re-pin
    /// always holds; a new session in a full store only if admitted (it is then placed as new
    /// again on its next request, and admitted once seen more often than what it would evict).
    pub fn pin_synced(&self, id: u128, endpoint: EndpointId, synced_ms: u64) {
        let h = hash_of(id);
        let pin = Pin {
            endpoint,
            synced_ms,
        };
        self.shard(h).pin(id, h, pin, self.now(), self.ttl_ticks());
    }

    /// Drops session `id`: the next request places it anew.
    pub fn forget(&self, id: u128) {
        let h = hash_of(id);
        self.shard(h).forget(id, h);
    }

    /// Every session held now: (session id, endpoint). For state hand-over and the state file.
    pub fn entries(&self) -> Vec<(u128, EndpointId)> {
        let (now, ttl) = (self.now(), self.ttl_ticks());
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            all.extend(shard.live(now, ttl).map(|(id, pin)| (id, pin.endpoint)));
        }
        all
    }

    /// Sessions held now (counting those expired since [`SessionStore::sync`] last ran).
    pub fn count(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).len() as u64).sum()
    }

    /// True when this store was built with these limits.
    pub fn has_limits(&self, ttl: Duration, capacity: u64) -> bool {
        self.ttl == ttl && self.capacity == capacity
    }

    /// A store with new limits holding this store's sessions (a reload that changed them).
    pub fn resized(&self, ttl: Duration, capacity: u64) -> SessionStore {
        let next = SessionStore::new(ttl, capacity);
        let (now, old_ttl) = (self.now(), self.ttl_ticks());
        for shard in self.shards.iter() {
            for (id, pin) in lock(shard).live(now, old_ttl) {
                next.pin_synced(id, pin.endpoint, pin.synced_ms);
            }
        }
        next
    }

    /// Drops the sessions idle past their TTL now, so [`SessionStore::count`] is exact; lookups
    /// otherwise drop them as they meet them.
    pub fn sync(&self) {
        let (now, ttl) = (self.now(), self.ttl_ticks());
        for shard in self.shards.iter() {
            lock(shard).purge(now, ttl);
        }
    }

    fn shard(&self, h: u64) -> MutexGuard<'_, Shard> {
        lock(&self.shards[(h as usize) & (self.shards.len() - 1)])
    }

    /// Ticks on the store's clock, from 1 (0 marks an empty slot); wraps after 13 years.
    fn now(&self) -> u32 {
        let ticks = self.epoch.elapsed().as_millis() / u128::from(TICK_MS);
        (ticks as u32).wrapping_add(1).max(1)
    }

    /// The idle TTL in ticks, rounded up (at least one, at most half the clock's range: 6 years).
    fn ttl_ticks(&self) -> u32 {
        let ticks = self.ttl.as_millis().div_ceil(u128::from(TICK_MS));
        u32::try_from(ticks)
            .unwrap_or(u32::MAX)
            .clamp(1, u32::MAX / 2 - 1)
    }
}

/// A shard's lock. Shard code does not panic; were it to, the shard is used as it is: a lost
/// or misplaced pin costs a session one re-placement, a dead lock would fail every request.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
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

    /// A request of a new session, as routing makes it: a lookup that misses, then a pin.
    fn one_request(s: &SessionStore, id: u128) {
        if s.get(id).is_none() {
            s.pin(id, EndpointId(id as u64));
        }
    }

    #[test]
    fn a_flood_of_one_request_sessions_never_evicts_a_session_in_use() {
        let max = 64;
        let s = SessionStore::new(Duration::from_secs(60), max);
        let hot = 7_000_000;
        s.pin(hot, EndpointId(1));
        for id in 1..=u128::from(3 * max) {
            one_request(&s, id);
            assert_eq!(
                s.get(hot),
                Some(EndpointId(1)),
                "evicted after {id} new sessions"
            );
            assert!(s.count() <= max, "bounded: {}", s.count());
        }
    }

    #[test]
    fn sessions_in_steady_use_survive_floods_larger_than_the_store_between_their_requests() {
        let max = 64;
        let s = SessionStore::new(Duration::from_secs(60), max);
        let hot: Vec<u128> = (0..4).map(|i| 9_000_000 + i).collect();
        for &h in &hot {
            one_request(&s, h);
        }
        // Each used again only after more new sessions than the store holds: least recently
        // used eviction would have dropped them all.
        for id in 1..=u128::from(30 * max) {
            one_request(&s, id);
            if id % 100 == 0 {
                for &h in &hot {
                    assert_eq!(s.get(h), Some(EndpointId(h as u64)), "{h} evicted by {id}");
                }
            }
        }
        assert!(s.count() <= max);
    }

    #[test]
    fn a_full_store_admits_a_session_seen_more_often_than_its_victim() {
        let s = SessionStore::new(Duration::from_secs(60), 16);
        for id in 1..=16 {
            one_request(&s, id);
        }
        let new = 1_000;
        one_request(&s, new);
        assert_eq!(
            s.get(new),
            None,
            "a first request in a full store is not kept"
        );
        // That lookup was its second access: more than any one-request session's.
        s.pin(new, EndpointId(5));
        assert_eq!(s.get(new), Some(EndpointId(5)));
        assert!(s.count() <= 16);
    }

    #[test]
    fn forgetting_keeps_every_other_session_reachable() {
        let s = SessionStore::new(Duration::from_secs(60), 5_000);
        let ids: Vec<u128> = (0..4_000u128)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
            .collect();
        for &id in &ids {
            s.pin(id, EndpointId(id as u64));
        }
        for &id in ids.iter().step_by(3) {
            s.forget(id);
        }
        for (i, &id) in ids.iter().enumerate() {
            let want = (i % 3 != 0).then_some(EndpointId(id as u64));
            assert_eq!(s.get(id), want, "session {i}");
        }
        assert_eq!(s.count(), 4_000 - 1_334);
        assert_eq!(s.entries().len(), 4_000 - 1_334);
    }

    #[test]
    fn expired_sessions_are_dropped_by_sync_and_left_out_of_entries() {
        let s = SessionStore::new(Duration::from_millis(150), 10);
        s.pin(1, EndpointId(1));
        std::thread::sleep(Duration::from_millis(350));
        s.pin(2, EndpointId(2));
        assert_eq!(s.entries(), vec![(2, EndpointId(2))]);
        s.sync();
        assert_eq!(s.count(), 1);
    }

    #[test]
    fn a_shared_stores_stamp_is_kept_with_the_pin() {
        let s = SessionStore::new(Duration::from_secs(60), 10);
        s.pin_synced(1, EndpointId(3), 1234);
        // Kept in tenths of a second, rounded down: a confirmation never looks fresher.
        assert_eq!(
            s.get_pin(1),
            Some(Pin {
                endpoint: EndpointId(3),
                synced_ms: 1200
            })
        );
        s.pin_synced(2, EndpointId(3), 5);
        assert_ne!(
            s.get_pin(2).map(|p| p.synced_ms),
            Some(0),
            "confirmed, however early"
        );
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
