//! [`Sketch`]: how often a session was seen lately, for the store's admission policy (TinyLFU).
//!
//! A count-min sketch of 4-bit counters, sixteen to a word: a session counts in four of them and
//! its estimate is the smallest, so collisions can only make a session look more frequent, never
//! less. When the store has counted ten times its capacity, every counter is halved, so what was
//! frequent long ago fades and a burst of new sessions cannot outweigh a steady one for ever.

/// Four counters per key, the usual count-min depth.
const DEPTH: u32 = 4;
/// A counter saturates at the largest 4-bit value.
const MAX: u64 = 15;
/// Words per block: a key's counters share one cache line.
const BLOCK: usize = 8;
/// Halves each 4-bit counter of a word at once.
const HALF_MASK: u64 = 0x7777_7777_7777_7777;

/// Access frequencies of the keys of one shard; 8 bytes per entry of its capacity.
#[derive(Debug)]
pub(super) struct Sketch {
    words: Vec<u64>,
    /// Increments since the last halving, and the count that triggers the next.
    added: u32,
    period: u32,
}

impl Sketch {
    /// A sketch for about `entries` keys (one word, sixteen counters, per key).
    pub fn new(entries: usize) -> Self {
        let words = entries.max(BLOCK).next_power_of_two();
        Sketch {
            words: vec![0; words],
            added: 0,
            period: u32::try_from(entries.max(8).saturating_mul(10)).unwrap_or(u32::MAX),
        }
    }

    /// Counts one access of the key hashed to `h`.
    pub fn increment(&mut self, h: u64) {
        let mut added = false;
        for i in 0..DEPTH {
            let (word, shift) = self.counter(h, i);
            let w = &mut self.words[word];
            if (*w >> shift) & MAX < MAX {
                *w += 1 << shift;
                added = true;
            }
        }
        if added {
            self.added += 1;
            if self.added >= self.period {
                self.halve();
            }
        }
    }

    /// How often the key hashed to `h` was seen lately (never underestimated), 0 to 15.
    pub fn frequency(&self, h: u64) -> u64 {
        (0..DEPTH)
            .map(|i| {
                let (word, shift) = self.counter(h, i);
                (self.words[word] >> shift) & MAX
            })
            .min()
            .unwrap_or(0)
    }

    /// The word and bit offset of the key's `i`-th counter: all four in one 64-byte block of
    /// eight words (one cache line per access, as Caffeine's sketch does), each in its own pair
    /// of words and at its own place in the word.
    fn counter(&self, h: u64, i: u32) -> (usize, u32) {
        let blocks = self.words.len() / BLOCK;
        let m = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let m = m ^ (m >> 29);
        let block = ((m >> 40) as usize) & (blocks - 1);
        let x = m >> (8 * i);
        let word = block * BLOCK + (i as usize) * 2 + (x & 1) as usize;
        let shift = (((x >> 1) & 15) as u32) * 4;
        (word, shift)
    }

    fn halve(&mut self) {
        for w in &mut self.words {
            *w = (*w >> 1) & HALF_MASK;
        }
        self.added /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_and_halve() {
        let mut s = Sketch::new(64);
        for _ in 0..20 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), 15);
        assert!(s.frequency(43) <= 1, "another key stays (almost) unseen");
        s.halve();
        assert_eq!(s.frequency(42), 7);
    }

    #[test]
    fn old_frequencies_fade() {
        let mut s = Sketch::new(64);
        for _ in 0..15 {
            s.increment(1);
        }
        // Ten times the capacity of other accesses halves the counters at least once.
        for k in 1_000..1_700 {
            s.increment(k);
        }
        assert!(s.frequency(1) < 15, "{}", s.frequency(1));
    }
}
