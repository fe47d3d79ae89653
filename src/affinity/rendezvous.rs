//! Weighted rendezvous (highest random weight) hashing.
//!
//! Every candidate gets the score `weight / -ln(u)`, where `u` in (0, 1) is a hash of the
//! session key and the candidate's stable id; the highest score wins. Any instance with the same
//! endpoints picks the same one, a candidate wins in proportion to its weight, and adding or
//! removing one candidate moves only the keys that it gains or held.

use std::net::IpAddr;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// A session key's hash; the same input gives the same key on every instance and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKey(pub u64);

impl HashKey {
    /// The key of a client address; an IPv4-mapped IPv6 address hashes as its IPv4 form.
    pub fn of_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => HashKey(xxh3_64(&v4.octets())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => HashKey(xxh3_64(&v4.octets())),
                None => HashKey(xxh3_64(&v6.octets())),
            },
        }
    }

    /// The key of arbitrary bytes (a header session key).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        HashKey(xxh3_64(bytes))
    }
}

fn score(key: HashKey, id: u64, weight: f64) -> f64 {
    let h = xxh3_64_with_seed(&key.0.to_le_bytes(), id);
    // 53 random bits, shifted into the open interval (0, 1).
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    weight / -u.ln()
}

/// Picks among `(index, stable id, weight)` candidates; candidates of weight 0 never win.
pub fn pick(key: HashKey, candidates: impl Iterator<Item = (usize, u64, f64)>) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (index, id, weight) in candidates {
        if weight <= 0.0 {
            continue;
        }
        let s = score(key, id, weight);
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, index));
        }
    }
    best.map(|(_, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ips(n: u32) -> impl Iterator<Item = HashKey> {
        (0..n).map(|i| HashKey::of_ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))))
    }

    fn pick_ids(key: HashKey, ids: &[u64], weights: &[f64]) -> Option<u64> {
        let c = ids
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (&id, &w))| (i, id, w));
        pick(key, c).map(|i| ids[i])
    }

    #[test]
    fn deterministic() {
        let ids = [11, 22, 33, 44];
        for key in ips(1000) {
            assert_eq!(
                pick_ids(key, &ids, &[1.0; 4]),
                pick_ids(key, &ids, &[1.0; 4])
            );
        }
    }

    #[test]
    fn ipv4_mapped_equals_ipv4() {
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(
            HashKey::of_ip(IpAddr::V4(v4)),
            HashKey::of_ip(IpAddr::V6(v4.to_ipv6_mapped()))
        );
    }

    #[test]
    fn adding_an_endpoint_moves_only_its_share() {
        let n = 10_000u32;
        let before = [1u64, 2, 3, 4];
        let after = [1u64, 2, 3, 4, 5];
        let moved = ips(n)
            .filter(|&k| pick_ids(k, &before, &[1.0; 4]) != pick_ids(k, &after, &[1.0; 5]))
            .count();
        // An ideal scheme moves 1/5 of the keys, all of them to the new endpoint.
        assert!(
            (moved as f64) < f64::from(n) * (0.2 + 0.02),
            "moved {moved}"
        );
        for k in ips(n) {
            let (b, a) = (
                pick_ids(k, &before, &[1.0; 4]),
                pick_ids(k, &after, &[1.0; 5]),
            );
            assert!(b == a || a == Some(5), "a key moved between old endpoints");
        }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        let before = [1u64, 2, 3, 4];
        let after = [1u64, 2, 4];
        for k in ips(10_000) {
            let b = pick_ids(k, &before, &[1.0; 4]);
            if b != Some(3) {
                assert_eq!(b, pick_ids(k, &after, &[1.0; 3]));
            }
        }
    }

    #[test]
    fn respects_weights() {
        let ids = [1u64, 2, 3];
        let weights = [1.0, 0.5, 0.0];
        let mut counts = [0usize; 3];
        for k in ips(30_000) {
            let id = pick_ids(k, &ids, &weights).unwrap();
            counts[(id - 1) as usize] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 must never win");
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!(
            (1.8..2.2).contains(&ratio),
            "ratio {ratio}, counts {counts:?}"
        );
    }
}
