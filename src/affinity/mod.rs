//! Session affinity primitives: the signed `__cflb` token, the request's cookies, and the
//! weighted rendezvous hashing that `hash` steering, `ip_cookie` and `header` sessions share.

pub mod cookies;
pub mod header_key;
pub mod rendezvous;
pub mod sessions;
pub mod token;

use xxhash_rust::xxh3::xxh3_64;

/// The stable id of an endpoint: a hash of its pool id and name, never of its address, so a
/// token survives an address change and reveals nothing about the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointId(pub u64);

impl EndpointId {
    /// The id of endpoint `name` in pool `pool`.
    pub fn of(pool: &str, name: &str) -> Self {
        let mut key = Vec::with_capacity(pool.len() + name.len() + 1);
        key.extend_from_slice(pool.as_bytes());
        key.push(0);
        key.extend_from_slice(name.as_bytes());
        EndpointId(xxh3_64(&key))
    }
}
