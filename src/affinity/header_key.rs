//! The session key of `header` affinity (SPEC §3.2): the configured request headers' values,
//! encoded unambiguously, in configured order.
//!
//! Each component is written as `tag | index | length-prefixed name | length-prefixed value`, so
//! no two different lists of (name, value) give the same bytes: `a=1,b=` differs from `a=1b=`.
//!
//! A session's id is what is stored (in memory, in the state file, in Redis key names), so it is
//! keyed: an HMAC under the first cookie key. Whoever reads a store without the key cannot
//! confirm a guessed user id or e-mail; every instance with the same `cookie_secret` agrees.
//! The placement key ([`HashKey`]) stays an unkeyed hash: it is never stored, and every
//! instance must place a session alike even before it has seen it.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

use super::cookies::pairs;
use super::rendezvous::HashKey;
use crate::config::SessionHeader;

/// Separates session ids from every other MAC under the same key (the `__cflb` token's).
const DOMAIN: &[u8] = b"tether/header-session-id/v1\0";

/// A header session's identity: a 128-bit keyed id for the stores, a 64-bit key for hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey {
    pub id: u128,
    pub hash: HashKey,
}

/// The keyed state that turns a session's canonical bytes into its id, prepared once per
/// snapshot: a request clones it instead of keying an HMAC afresh.
#[derive(Clone)]
pub struct SessionIds {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for SessionIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionIds(keyed)")
    }
}

impl SessionIds {
    /// Ids under `key` (the cookie key that signs); see `CookieKeys::session_ids`.
    pub(crate) fn under(key: &Hmac<Sha256>) -> SessionIds {
        let mut mac = key.clone();
        mac.update(DOMAIN);
        SessionIds { mac }
    }

    /// The id of a session's canonical bytes: HMAC-SHA256 truncated to 128 bits, the same on
    /// every instance with the same key and unpredictable without it.
    pub fn id(&self, bytes: &[u8]) -> u128 {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        let tag = mac.finalize().into_bytes();
        let mut id = [0u8; 16];
        id.copy_from_slice(&tag[..16]);
        u128::from_be_bytes(id)
    }
}

/// The canonical bytes of a request's session, or `None` when the request has no session:
/// none of the configured values is present, or one is missing under `require_all`.
pub fn session_bytes(
    entries: &[SessionHeader],
    headers: &HeaderMap,
    cookies: &[&[u8]],
    require_all: bool,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    let (mut present, mut missing) = (0usize, 0usize);
    let mut put = |tag: u8, index: usize, name: &[u8], value: Option<&[u8]>| {
        out.push(tag);
        out.extend_from_slice(&(index as u32).to_be_bytes());
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name);
        match value {
            Some(v) => {
                present += 1;
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
            None => {
                missing += 1;
                out.push(0);
            }
        }
    };
    for (i, entry) in entries.iter().enumerate() {
        match entry {
            SessionHeader::Header(name) => {
                let values: Vec<&[u8]> = headers
                    .get_all(name.as_str())
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect();
                let joined = (!values.is_empty()).then(|| values.join(&b"\n"[..]));
                put(b'h', i, name.as_bytes(), joined.as_deref());
            }
            SessionHeader::Cookies(names) => {
                for name in names {
                    let value = cookies
                        .iter()
                        .flat_map(|h| pairs(h))
                        .find(|(n, _)| *n == name.as_bytes())
                        .map(|(_, v)| v);
                    put(b'c', i, name.as_bytes(), value);
                }
            }
            SessionHeader::AllCookies => {
                // Browsers do not promise an order, so all cookies are taken sorted.
                let mut all: Vec<(&[u8], &[u8])> = cookies.iter().flat_map(|h| pairs(h)).collect();
                all.sort_unstable();
                if all.is_empty() {
                    put(b'a', i, b"", None);
                }
                for (name, value) in all {
                    put(b'a', i, name, Some(value));
                }
            }
        }
    }
    let has_session = if require_all {
        missing == 0 && present > 0
    } else {
        present > 0
    };
    has_session.then_some(out)
}

/// The request's session key under `ids`, or `None` when it has no header session. The one
/// place a session id is computed: routing and the Redis store both call it.
pub fn session_key(
    ids: &SessionIds,
    entries: &[SessionHeader],
    headers: &HeaderMap,
    cookies: &[&[u8]],
    require_all: bool,
) -> Option<SessionKey> {
    let bytes = session_bytes(entries, headers, cookies, require_all)?;
    Some(SessionKey {
        id: ids.id(&bytes),
        hash: HashKey::of_bytes(&bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::affinity::token::CookieKeys;

    fn ids() -> SessionIds {
        CookieKeys::new(&["session id test key"]).session_ids()
    }

    fn entries(list: &[&str]) -> Vec<SessionHeader> {
        list.iter()
            .map(|e| SessionHeader::parse(e).unwrap())
            .collect()
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn names_are_case_insensitive_values_exact() {
        let e = entries(&["X-User"]);
        let a = session_key(&ids(), &e, &headers(&[("x-user", "alice")]), &[], false);
        let b = session_key(&ids(), &e, &headers(&[("X-USER", "alice")]), &[], false);
        let c = session_key(&ids(), &e, &headers(&[("x-user", "Alice")]), &[], false);
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn encoding_is_unambiguous() {
        let e = entries(&["a", "b"]);
        let one = session_bytes(&e, &headers(&[("a", "1"), ("b", "")]), &[], false);
        let two = session_bytes(&e, &headers(&[("a", "1b=")]), &[], false);
        assert_ne!(one, two);
        let swapped = session_bytes(&e, &headers(&[("a", ""), ("b", "1")]), &[], false);
        assert_ne!(one, swapped);
    }

    #[test]
    fn require_all_headers() {
        let e = entries(&["x-a", "x-b"]);
        let only_a = headers(&[("x-a", "1")]);
        let both = headers(&[("x-a", "1"), ("x-b", "2")]);
        assert!(session_key(&ids(), &e, &only_a, &[], false).is_some());
        assert!(session_key(&ids(), &e, &only_a, &[], true).is_none());
        assert!(session_key(&ids(), &e, &both, &[], true).is_some());
        assert!(session_key(&ids(), &e, &HeaderMap::new(), &[], false).is_none());
        assert!(session_key(&ids(), &e, &HeaderMap::new(), &[], true).is_none());
    }

    #[test]
    fn cookie_entries() {
        let named = entries(&["cookie:sid"]);
        let a = session_key(
            &ids(),
            &named,
            &HeaderMap::new(),
            &[b"theme=dark; sid=42"],
            false,
        );
        let b = session_key(
            &ids(),
            &named,
            &HeaderMap::new(),
            &[b"sid=42; theme=light"],
            false,
        );
        let c = session_key(&ids(), &named, &HeaderMap::new(), &[b"sid=43"], false);
        assert!(a.is_some());
        assert_eq!(a, b, "only the named cookie counts");
        assert_ne!(a, c);
        assert!(session_key(&ids(), &named, &HeaderMap::new(), &[b"theme=dark"], false).is_none());

        let all = entries(&["cookie"]);
        let x = session_key(&ids(), &all, &HeaderMap::new(), &[b"a=1; b=2"], false);
        let y = session_key(
            &ids(),
            &all,
            &HeaderMap::new(),
            &[&b"b=2"[..], b"a=1"],
            false,
        );
        assert!(x.is_some());
        assert_eq!(x, y, "all cookies, whatever their order");
        assert!(session_key(&ids(), &all, &HeaderMap::new(), &[], false).is_none());
    }

    #[test]
    fn ids_are_keyed_and_agree_under_one_key() {
        let e = entries(&["x-user"]);
        let h = headers(&[("x-user", "alice@example.com")]);
        let bytes = session_bytes(&e, &h, &[], false).unwrap();
        let one = CookieKeys::new(&["key one"]);
        let two = CookieKeys::new(&["key two"]);
        let rotated = CookieKeys::new(&["key two", "key one"]);
        let id = |k: &CookieKeys| session_key(&k.session_ids(), &e, &h, &[], false).unwrap();
        assert_eq!(
            id(&one),
            id(&CookieKeys::new(&["key one"])),
            "same key, same id"
        );
        assert_ne!(id(&one).id, id(&two).id, "another key, another id");
        assert_eq!(id(&rotated).id, id(&two).id, "the first key keys ids");
        assert_eq!(
            id(&one).hash,
            id(&two).hash,
            "placement does not depend on the key"
        );
        let unkeyed = xxhash_rust::xxh3::xxh3_128(&bytes);
        assert_ne!(id(&one).id, unkeyed);
    }
}
