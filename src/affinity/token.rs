//! The `__cflb` token: which endpoint a session is pinned to and until when, under a MAC.
//!
//! Layout before base64url (no padding): `version (1) | endpoint id (8, BE) | expiry (8, BE,
//! unix seconds) | HMAC-SHA256 (32)`, 49 bytes, 66 characters. The MAC also covers the load
//! balancer's name, so a token minted for one balancer is worthless on another. Nothing in it
//! reveals an address: the endpoint id is a hash of the pool id and the endpoint's name.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::header_key::SessionIds;
use super::EndpointId;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 8 + 8;
const MAC_LEN: usize = 32;
const RAW_LEN: usize = PAYLOAD_LEN + MAC_LEN;
/// Length of a token as it appears in the cookie.
pub const TOKEN_LEN: usize = (RAW_LEN * 4).div_ceil(3);
const DOMAIN: &[u8] = b"tether/__cflb/v1\0";

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub endpoint: EndpointId,
    /// Unix seconds after which the pin no longer holds.
    pub expires: u64,
}

/// Why a token was not honoured. Every case is treated as "no cookie" by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Wrong length, not base64url, or an unknown version.
    Malformed,
    /// The MAC does not verify under any configured key (forged, tampered, or foreign key).
    Forged,
    /// Authentic but past its expiry.
    Expired,
}

/// The cookie keys: the first signs, every one verifies (key rotation).
#[derive(Clone)]
pub struct CookieKeys {
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieKeys({} keys)", self.keys.len())
    }
}

impl CookieKeys {
    /// Keys from secrets in order; `secrets` must not be empty.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Self {
        assert!(!secrets.is_empty(), "at least one cookie key");
        let keys = secrets
            .iter()
            .map(|s| HmacSha256::new_from_slice(s.as_ref()).expect("HMAC takes keys of any length"))
            .collect();
        CookieKeys { keys }
    }

    /// A fresh random key from the operating system's CSPRNG, for a config without
    /// `cookie_secret`. Never from a seeded user-space generator: one whose seed is the clock
    /// and the thread lets anyone holding one cookie recover the key and forge pins.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        // The kernel's generator does not fail once the system has booted; a process that
        // cannot read it must not sign cookies with a guessable key.
        getrandom::fill(&mut secret).expect("the operating system's random generator is available");
        Self::new(&[secret])
    }

    /// The state that keys header session ids: the first key, the one that signs. A new first
    /// key gives every header session a new id.
    pub fn session_ids(&self) -> SessionIds {
        SessionIds::under(&self.keys[0])
    }

    fn mac(&self, key: &HmacSha256, balancer: &str, payload: &[u8]) -> HmacSha256 {
        let mut mac = key.clone();
        mac.update(DOMAIN);
        mac.update(&(balancer.len() as u64).to_be_bytes());
        mac.update(balancer.as_bytes());
        mac.update(payload);
        mac
    }

    /// Mints a token pinning `endpoint` on `balancer` until `expires` (unix seconds).
    pub fn mint(&self, balancer: &str, endpoint: EndpointId, expires: u64) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..9].copy_from_slice(&endpoint.0.to_be_bytes());
        raw[9..17].copy_from_slice(&expires.to_be_bytes());
        let tag = self
            .mac(&self.keys[0], balancer, &raw[..PAYLOAD_LEN])
            .finalize()
            .into_bytes();
        raw[PAYLOAD_LEN..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a token for `balancer` at `now`; any failure means "treat as absent".
    pub fn verify(&self, balancer: &str, token: &str, now: u64) -> Result<Pin, TokenError> {
        if token.len() != TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut raw = [0u8; RAW_LEN + 2];
        let n = URL_SAFE_NO_PAD
            .decode_slice(token.as_bytes(), &mut raw)
            .map_err(|_| TokenError::Malformed)?;
        if n != RAW_LEN || raw[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = raw[..RAW_LEN].split_at(PAYLOAD_LEN);
        let authentic = self
            .keys
            .iter()
            .any(|key| self.mac(key, balancer, payload).verify_slice(tag).is_ok());
        if !authentic {
            return Err(TokenError::Forged);
        }
        let endpoint = EndpointId(u64::from_be_bytes(
            payload[1..9].try_into().expect("8 bytes"),
        ));
        let expires = u64::from_be_bytes(payload[9..17].try_into().expect("8 bytes"));
        if now >= expires {
            return Err(TokenError::Expired);
        }
        Ok(Pin { endpoint, expires })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: EndpointId = EndpointId(0x0123_4567_89ab_cdef);

    fn keys() -> CookieKeys {
        CookieKeys::new(&["a secret of at least thirty-two bytes!"])
    }

    #[test]
    fn round_trip() {
        let t = keys().mint("shop", EP, 2_000);
        assert_eq!(t.len(), TOKEN_LEN);
        assert_eq!(
            keys().verify("shop", &t, 1_000),
            Ok(Pin {
                endpoint: EP,
                expires: 2_000
            })
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let t = keys().mint("shop", EP, 2_000);
        assert_eq!(keys().verify("shop", &t, 2_000), Err(TokenError::Expired));
    }

    #[test]
    fn every_flipped_character_is_refused() {
        let t = keys().mint("shop", EP, 2_000);
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(b).unwrap();
            assert!(
                keys().verify("shop", &forged, 1_000).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn truncated_extended_and_garbage_are_malformed() {
        let t = keys().mint("shop", EP, 2_000);
        let k = keys();
        assert_eq!(
            k.verify("shop", &t[..t.len() - 1], 1),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            k.verify("shop", &format!("{t}A"), 1),
            Err(TokenError::Malformed)
        );
        assert_eq!(k.verify("shop", "", 1), Err(TokenError::Malformed));
        assert_eq!(
            k.verify("shop", &"!".repeat(TOKEN_LEN), 1),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            k.verify("shop", &"x".repeat(10_000), 1),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn another_key_or_balancer_is_forged() {
        let t = keys().mint("shop", EP, 2_000);
        let other = CookieKeys::new(&["another secret entirely, also long enough"]);
        assert_eq!(other.verify("shop", &t, 1_000), Err(TokenError::Forged));
        assert_eq!(keys().verify("blog", &t, 1_000), Err(TokenError::Forged));
    }

    /// The attack of issue 11: the old generator seeded itself from `Instant::now()` and the
    /// thread id, so knowing roughly when the key was made was enough to recompute it. Here the
    /// test knows the instant to the microsecond and the thread exactly, and still must not
    /// find the key.
    #[test]
    fn random_key_is_not_derived_from_time_and_thread() {
        use std::hash::{Hash, Hasher};
        use std::time::{Duration, Instant};

        let (keys, before, after, thread) = std::thread::spawn(|| {
            let before = Instant::now();
            let keys = CookieKeys::random();
            let after = Instant::now();
            (keys, before, after, std::thread::current().id())
        })
        .join()
        .unwrap();
        let token = keys.mint("shop", EP, 2_000);
        let window = (after - before).as_nanos().min(200_000) as u64;
        for ns in 0..=window {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (before + Duration::from_nanos(ns)).hash(&mut h);
            thread.hash(&mut h);
            let mut rng = fastrand::Rng::with_seed(h.finish());
            let guess: [u8; 32] = std::array::from_fn(|_| rng.u8(..));
            assert_ne!(
                CookieKeys::new(&[guess]).mint("shop", EP, 2_000),
                token,
                "the key was recomputed from the clock and the thread id"
            );
        }
        assert_ne!(
            CookieKeys::random().mint("shop", EP, 2_000),
            token,
            "two random keys are the same"
        );
    }

    #[test]
    fn rotation_first_signs_all_verify() {
        let old = CookieKeys::new(&["old key"]);
        let rotated = CookieKeys::new(&["new key", "old key"]);
        let t_old = old.mint("shop", EP, 2_000);
        assert!(rotated.verify("shop", &t_old, 1_000).is_ok());
        let t_new = rotated.mint("shop", EP, 2_000);
        assert_eq!(old.verify("shop", &t_new, 1_000), Err(TokenError::Forged));
    }
}
