//! The session key of `header` affinity (SPEC §3.2): the configured request headers' values,
//! encoded unambiguously, in configured order.
//!
//! Each component is written as `tag | index | length-prefixed name | length-prefixed value`, so
//! no two different lists of (name, value) give the same bytes: `a=1,b=` differs from `a=1b=`.

use http::HeaderMap;
use xxhash_rust::xxh3::xxh3_128;

use super::cookies::pairs;
use super::rendezvous::HashKey;
use crate::config::SessionHeader;

/// A header session's identity: a 128-bit id for the store, a 64-bit key for hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey {
    pub id: u128,
    pub hash: HashKey,
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

/// The request's session key, or `None` when it has no header session.
pub fn session_key(
    entries: &[SessionHeader],
    headers: &HeaderMap,
    cookies: &[&[u8]],
    require_all: bool,
) -> Option<SessionKey> {
    let bytes = session_bytes(entries, headers, cookies, require_all)?;
    Some(SessionKey {
        id: xxh3_128(&bytes),
        hash: HashKey::of_bytes(&bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let a = session_key(&e, &headers(&[("x-user", "alice")]), &[], false);
        let b = session_key(&e, &headers(&[("X-USER", "alice")]), &[], false);
        let c = session_key(&e, &headers(&[("x-user", "Alice")]), &[], false);
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
        assert!(session_key(&e, &only_a, &[], false).is_some());
        assert!(session_key(&e, &only_a, &[], true).is_none());
        assert!(session_key(&e, &both, &[], true).is_some());
        assert!(session_key(&e, &HeaderMap::new(), &[], false).is_none());
        assert!(session_key(&e, &HeaderMap::new(), &[], true).is_none());
    }

    #[test]
    fn cookie_entries() {
        let named = entries(&["cookie:sid"]);
        let a = session_key(&named, &HeaderMap::new(), &[b"theme=dark; sid=42"], false);
        let b = session_key(&named, &HeaderMap::new(), &[b"sid=42; theme=light"], false);
        let c = session_key(&named, &HeaderMap::new(), &[b"sid=43"], false);
        assert!(a.is_some());
        assert_eq!(a, b, "only the named cookie counts");
        assert_ne!(a, c);
        assert!(session_key(&named, &HeaderMap::new(), &[b"theme=dark"], false).is_none());

        let all = entries(&["cookie"]);
        let x = session_key(&all, &HeaderMap::new(), &[b"a=1; b=2"], false);
        let y = session_key(&all, &HeaderMap::new(), &[&b"b=2"[..], b"a=1"], false);
        assert!(x.is_some());
        assert_eq!(x, y, "all cookies, whatever their order");
        assert!(session_key(&all, &HeaderMap::new(), &[], false).is_none());
    }
}
