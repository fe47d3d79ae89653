//! [`Shard`]: one part of the session store, an open-addressing table (linear probing,
//! backward-shift deletion, so no tombstones) of 40-byte slots, with its frequency sketch.
//!
//! The table is allocated whole, for its share of `max_sessions` at 80 % load, zeroed: pages
//! the system has not handed over yet cost nothing until a session lands on them, and a
//! growing table would leave its old copies to the allocator (mimalloc kept 30–60 % more
//! resident that way). Full, it costs 40 bytes a session, 8 more for the sketch. When
//! full, a new session takes the place of the least valuable of a few sampled ones (expired
//! first, then the least frequent, then the least recently used) only if the sketch has seen
//! it more often (TinyLFU admission): a flood of one-request sessions cannot push out one in use.

use super::sketch::Sketch;
use super::Pin;
use crate::affinity::EndpointId;

/// Slots per entry at most: 80 % load keeps a miss to a dozen probes.
const LOAD_NUM: usize = 5;
const LOAD_DEN: usize = 4;
/// Candidates for eviction looked at when a full shard meets a new session.
const SAMPLE: usize = 8;

/// One session in 32 bytes: its id, its endpoint, when it was last used (ticks on the store's
/// clock, from 1; 0 marks an empty slot) and when a shared store confirmed it (ticks; 0 =
/// never).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    id_lo: u64,
    id_hi: u64,
    endpoint: u64,
    used: u32,
    synced: u32,
}

/// The store's clock ticks in tenths of a second: a u32 of them lasts 13 years, and an idle TTL
/// is whole seconds in the config.
pub(super) const TICK_MS: u64 = 100;

impl Slot {
    /// The slot as stored: four words, so the table is a zeroed allocation (`vec!` of zero
    /// arrays), which the system maps lazily.
    fn pack(self) -> [u64; 4] {
        let times = u64::from(self.used) | (u64::from(self.synced) << 32);
        [self.id_lo, self.id_hi, self.endpoint, times]
    }
    fn unpack(w: [u64; 4]) -> Self {
        Slot {
            id_lo: w[0],
            id_hi: w[1],
            endpoint: w[2],
            used: w[3] as u32,
            synced: (w[3] >> 32) as u32,
        }
    }
    fn id(&self) -> u128 {
        (u128::from(self.id_hi) << 64) | u128::from(self.id_lo)
    }
    fn is_empty(&self) -> bool {
        self.used == 0
    }
    fn pin(&self) -> Pin {
        Pin {
            endpoint: EndpointId(self.endpoint),
            synced_ms: u64::from(self.synced) * TICK_MS,
        }
    }
    /// Idle for at least `ttl` ticks at `now` (ticks wrap after 13 years). A use stamped after
    /// `now` is fresh: `entries` and `sync` read the clock once and then meet sessions that
    /// requests on other threads touched since.
    fn expired(&self, now: u32, ttl: u32) -> bool {
        let age = now.wrapping_sub(self.used);
        age < u32::MAX / 2 && age >= ttl
    }
}

/// A sync stamp in ticks, rounded down (a confirmation looks older, never fresher); a stamp
/// within the first tick still counts as a confirmation.
fn synced_ticks(ms: u64) -> u32 {
    if ms == 0 {
        0
    } else {
        u32::try_from(ms / TICK_MS).unwrap_or(u32::MAX).max(1)
    }
}

/// What a lookup found.
pub(super) enum Found {
    Live(Pin),
    /// The session was held but idle past the TTL: it is gone now.
    Expired,
    Absent,
}

/// One shard: at most `cap` sessions.
#[derive(Debug)]
pub(super) struct Shard {
    slots: Vec<[u64; 4]>,
    len: usize,
    cap: usize,
    sketch: Sketch,
}

impl Shard {
    pub fn new(cap: usize) -> Self {
        Shard {
            slots: vec![[0; 4]; max_slots(cap)],
            len: 0,
            cap,
            sketch: Sketch::new(cap),
        }
    }

    fn slot(&self, i: usize) -> Slot {
        Slot::unpack(self.slots[i])
    }

    fn set(&mut self, i: usize, s: Slot) {
        self.slots[i] = s.pack();
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The pin of `id` (`h` is its hash), counted as an access and, when live, refreshed.
    pub fn get(&mut self, id: u128, h: u64, now: u32, ttl: u32) -> Found {
        self.sketch.increment(h);
        let Some(i) = self.find(id, h) else {
            return Found::Absent;
        };
        let mut s = self.slot(i);
        if s.expired(now, ttl) {
            self.remove_at(i);
            return Found::Expired;
        }
        s.used = now;
        self.set(i, s);
        Found::Live(s.pin())
    }

    /// Pins `id`: updated in place when held; otherwise inserted while there is room, or in
    /// place of a sampled victim the sketch finds less frequent. False when not admitted.
    pub fn pin(&mut self, id: u128, h: u64, pin: Pin, now: u32, ttl: u32) -> bool {
        if let Some(i) = self.find(id, h) {
            let mut s = self.slot(i);
            s.endpoint = pin.endpoint.0;
            s.synced = synced_ticks(pin.synced_ms);
            s.used = now;
            self.set(i, s);
            return true;
        }
        if self.len >= self.cap && !self.make_room(h, now, ttl) {
            return false;
        }
        self.insert(
            Slot {
                id_lo: id as u64,
                id_hi: (id >> 64) as u64,
                endpoint: pin.endpoint.0,
                used: now,
                synced: synced_ticks(pin.synced_ms),
            },
            h,
        );
        true
    }

    /// Drops `id` if held.
    pub fn forget(&mut self, id: u128, h: u64) {
        if let Some(i) = self.find(id, h) {
            self.remove_at(i);
        }
    }

    /// Drops every session idle past the TTL.
    pub fn purge(&mut self, now: u32, ttl: u32) {
        let mut i = 0;
        while i < self.slots.len() {
            let s = self.slot(i);
            if !s.is_empty() && s.expired(now, ttl) {
                // Backward shift may move a later entry here: look at this slot again.
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
    }

    /// Every live session: (id, pin).
    pub fn live(&self, now: u32, ttl: u32) -> impl Iterator<Item = (u128, Pin)> + '_ {
        self.slots
            .iter()
            .map(|w| Slot::unpack(*w))
            .filter(move |s| !s.is_empty() && !s.expired(now, ttl))
            .map(|s| (s.id(), s.pin()))
    }

    /// Frees one place for the key hashed to `h`: the least valuable of a sample goes if it
    /// expired, or if the sketch has seen the new key more often than it.
    fn make_room(&mut self, h: u64, now: u32, ttl: u32) -> bool {
        let n = self.slots.len();
        let start = home(h.rotate_left(32), n);
        let mut victim: Option<(usize, (bool, u64, u32))> = None;
        for k in 0..n.min(SAMPLE * 4) {
            let i = (start + k) % n;
            let s = self.slot(i);
            if s.is_empty() {
                continue;
            }
            let live = !s.expired(now, ttl);
            let rank = (live, self.sketch.frequency(hash_of(s.id())), s.used);
            if victim.is_none_or(|(_, r)| rank < r) {
                victim = Some((i, rank));
            }
            if !live || k >= SAMPLE {
                break;
            }
        }
        let Some((i, (live, freq, _))) = victim else {
            return false;
        };
        if live && self.sketch.frequency(h) <= freq {
            return false;
        }
        self.remove_at(i);
        true
    }

    fn find(&self, id: u128, h: u64) -> Option<usize> {
        let n = self.slots.len();
        let (lo, hi) = (id as u64, (id >> 64) as u64);
        let mut i = home(h, n);
        loop {
            let [id_lo, id_hi, _, times] = self.slots[i];
            if times as u32 == 0 {
                return None;
            }
            if id_lo == lo && id_hi == hi {
                return Some(i);
            }
            i = (i + 1) % n;
        }
    }

    fn insert(&mut self, slot: Slot, h: u64) {
        let n = self.slots.len();
        let mut i = home(h, n);
        while !self.slot(i).is_empty() {
            i = (i + 1) % n;
        }
        self.set(i, slot);
        self.len += 1;
    }

    /// Empties slot `i`, moving later entries of its probe run back so every entry stays
    /// reachable from its home slot without tombstones.
    fn remove_at(&mut self, mut i: usize) {
        let n = self.slots.len();
        let mut j = i;
        loop {
            j = (j + 1) % n;
            let s = self.slot(j);
            if s.is_empty() {
                break;
            }
            let h = home(hash_of(s.id()), n);
            // The entry at j may move to i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !stays {
                self.set(i, s);
                i = j;
            }
        }
        self.set(i, Slot::default());
        self.len -= 1;
    }
}

/// The most slots a shard of `cap` sessions uses.
fn max_slots(cap: usize) -> usize {
    (cap * LOAD_NUM).div_ceil(LOAD_DEN).max(1) + 1
}

/// The hash of a session id that places it: ids are keyed MACs already, so folding suffices;
/// the multiply spreads ids that differ only in a few bits (as tests and benchmarks make them).
pub(super) fn hash_of(id: u128) -> u64 {
    let x = (id as u64) ^ ((id >> 64) as u64).rotate_left(31);
    let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 32)
}

/// The home slot of hash `h` in a table of `n` slots (the high bits, by multiplication).
fn home(h: u64, n: usize) -> usize {
    ((u128::from(h) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_use_stamped_after_the_readers_clock_is_fresh() {
        let s = Slot {
            used: 1_001,
            ..Slot::default()
        };
        assert!(
            !s.expired(1_000, 10),
            "touched by another thread after `now` was read"
        );
        assert!(!s.expired(1_010, 10));
        assert!(s.expired(1_011, 10));
        let wrapped = Slot {
            used: u32::MAX - 2,
            ..Slot::default()
        };
        assert!(
            wrapped.expired(8, 10),
            "ages across the wrap of the tick counter"
        );
        assert!(!wrapped.expired(5, 10));
    }
}
