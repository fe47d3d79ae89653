//! Property tests of the pure core: the cookie token, cookie-header parsing, rendezvous hashing
//! and the header session key. No sockets.

#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;

use tether::affinity::cookies::{cflb_values, has_cflb, push_without_cflb};
use tether::affinity::header_key::session_bytes;
use tether::affinity::rendezvous::{pick, HashKey};
use tether::affinity::token::{CookieKeys, TokenError};
use tether::affinity::EndpointId;
use tether::config::SessionHeader;
use tether::proxy::forwarded::{client_from, parse_hop, upstream_value};

/// The header value as the proxy forwards it: `None` when it has no `__cflb` (forwarded as it
/// is), else without its `__cflb` cookies.
fn strip_cflb(raw: &[u8]) -> Option<Vec<u8>> {
    has_cflb(raw).then(|| {
        let mut kept = Vec::new();
        push_without_cflb(raw, &mut kept);
        kept
    })
}

fn keys(secret: &str) -> CookieKeys {
    CookieKeys::new(&[secret])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn token_round_trips(secret in ".{1,64}", lb in "[a-z.*]{1,30}", id in any::<u64>(), now in 0u64..1 << 40, ttl in 1u64..1 << 30) {
        let k = keys(&secret);
        let t = k.mint(&lb, EndpointId(id), now + ttl);
        let pin = k.verify(&lb, &t, now).unwrap();
        prop_assert_eq!((pin.endpoint, pin.expires), (EndpointId(id), now + ttl));
    }

    #[test]
    fn any_bit_flip_is_rejected(id in any::<u64>(), byte in 0usize..49, bit in 0u8..8) {
        let k = keys("property secret, long enough for HMAC");
        let t = k.mint("shop", EndpointId(id), 2_000);
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[byte] ^= 1 << bit;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert!(k.verify("shop", &forged, 1_000).is_err());
    }

    #[test]
    fn truncation_and_extension_are_rejected(id in any::<u64>(), cut in 0usize..66, tail in "[A-Za-z0-9_-]{1,20}") {
        let k = keys("property secret, long enough for HMAC");
        let t = k.mint("shop", EndpointId(id), 2_000);
        prop_assert_eq!(k.verify("shop", &t[..cut], 1_000), Err(TokenError::Malformed));
        let extended = format!("{t}{tail}");
        prop_assert!(k.verify("shop", &extended, 1_000).is_err());
    }

    #[test]
    fn another_key_balancer_or_endpoint_is_rejected(id in any::<u64>(), other in any::<u64>(), secret in "[a-z]{8,40}") {
        prop_assume!(id != other && secret != "property secret");
        let k = keys("property secret");
        let t = k.mint("shop", EndpointId(id), 2_000);
        prop_assert_eq!(keys(&secret).verify("shop", &t, 1_000), Err(TokenError::Forged));
        prop_assert_eq!(k.verify("blog", &t, 1_000), Err(TokenError::Forged));
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[1..9].copy_from_slice(&other.to_be_bytes());
        prop_assert_eq!(k.verify("shop", &URL_SAFE_NO_PAD.encode(&raw), 1_000), Err(TokenError::Forged));
    }

    #[test]
    fn past_expiry_is_rejected(id in any::<u64>(), expires in 0u64..1 << 40, late in 0u64..1 << 20) {
        let k = keys("property secret");
        let t = k.mint("shop", EndpointId(id), expires);
        prop_assert_eq!(k.verify("shop", &t, expires + late), Err(TokenError::Expired));
    }

    #[test]
    fn arbitrary_cookie_headers_never_panic(header in any::<Vec<u8>>(), token in any::<Vec<u8>>()) {
        let headers = [header.as_slice()];
        let values: Vec<&[u8]> = cflb_values(&headers).collect();
        let _ = strip_cflb(&header);
        let k = keys("property secret");
        for v in values {
            if let Ok(v) = std::str::from_utf8(v) {
                let _ = k.verify("shop", v, 0);
            }
        }
        let _ = k.verify("shop", &String::from_utf8_lossy(&token), 0);
    }

    /// Whatever bytes the other cookies hold (raw UTF-8, Latin-1, controls), stripping `__cflb`
    /// keeps every one of them, byte for byte and in order; a header without `__cflb` is left
    /// as it is.
    #[test]
    fn strip_keeps_every_non_cflb_byte(
        items in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_filter("no ;", |b| *b != b';'), 0..12), 0..8),
        at in any::<proptest::sample::Index>(),
        pad in "[ \t]{0,2}",
    ) {
        let is_cflb = |i: &[u8]| {
            let eq = i.iter().position(|&b| b == b'=');
            eq.is_some_and(|eq| i[..eq].trim_ascii() == b"__cflb")
        };
        let others: Vec<&[u8]> = items.iter().map(Vec::as_slice).filter(|i| !is_cflb(i)).collect();
        let plain = others.join(&b";"[..]);
        prop_assert_eq!(strip_cflb(&plain), None);
        let mut with: Vec<Vec<u8>> = others.iter().map(|i| i.to_vec()).collect();
        let cflb = format!("{pad}__cflb{pad}={pad}token{pad}").into_bytes();
        with.insert(at.index(with.len() + 1), cflb);
        let stripped = strip_cflb(&with.join(&b";"[..])).unwrap();
        let kept: Vec<&[u8]> = others.iter().map(|i| i.trim_ascii()).filter(|i| !i.is_empty()).collect();
        prop_assert_eq!(stripped, kept.join(&b"; "[..]));
    }

    /// Any bytes in any number of X-Forwarded-For lines: no panic, and the upstream value is
    /// every non-empty line, in order, then the peer.
    #[test]
    fn arbitrary_forwarded_for_lines_never_panic_and_all_reach_upstream(
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5),
        trusted_bits in any::<u64>(),
    ) {
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let _ = client_from(refs.iter().copied(), |ip| trusted_bits & (1 << (ip.to_string().len() % 64)) != 0);
        for hop in &refs {
            let _ = parse_hop(hop);
        }
        let peer = std::net::IpAddr::from([192, 0, 2, 1]);
        let mut out = Vec::new();
        upstream_value(|| refs.iter().copied(), peer, &mut out);
        let mut want: Vec<&[u8]> = refs.iter().map(|l| l.trim_ascii()).filter(|l| !l.is_empty()).collect();
        want.push(b"192.0.2.1");
        prop_assert_eq!(out, want.join(&b", "[..]));
    }

    /// Every hop form names its address, and the walk returns the right-most untrusted hop
    /// wherever the lines are split.
    #[test]
    fn forwarded_for_walk_finds_the_rightmost_untrusted_hop(
        hops in proptest::collection::vec((any::<std::net::IpAddr>(), any::<u16>(), 0u8..3, any::<bool>()), 1..8),
        cut in any::<proptest::sample::Index>(),
    ) {
        let written: Vec<String> = hops.iter().map(|(ip, port, form, _)| match (ip, form) {
            (_, 0) => ip.to_string(),
            (std::net::IpAddr::V4(v4), _) => format!("{v4}:{port}"),
            (std::net::IpAddr::V6(v6), 1) => format!("[{v6}]:{port}"),
            (std::net::IpAddr::V6(v6), _) => format!("[{v6}]"),
        }).collect();
        for (w, (ip, ..)) in written.iter().zip(&hops) {
            prop_assert_eq!(parse_hop(w.as_bytes()), Some(ip.to_canonical()), "{}", w);
        }
        let trusted: Vec<std::net::IpAddr> = hops.iter().filter(|h| h.3).map(|h| h.0.to_canonical()).collect();
        let want = hops.iter().rev().map(|h| h.0.to_canonical()).find(|ip| !trusted.contains(ip));
        let at = cut.index(written.len() + 1);
        let (a, b) = (written[..at].join(", "), written[at..].join(","));
        let lines: Vec<&[u8]> = [a.as_bytes(), b.as_bytes()].into_iter().filter(|l| !l.is_empty()).collect();
        prop_assert_eq!(client_from(lines.iter().copied(), |ip| trusted.contains(&ip)), want);
    }

    #[test]
    fn rendezvous_is_deterministic(key in any::<u64>(), ids in proptest::collection::vec(any::<u64>(), 1..20)) {
        let c = || ids.iter().enumerate().map(|(i, &id)| (i, id, 1.0));
        prop_assert_eq!(pick(HashKey(key), c()), pick(HashKey(key), c()));
        prop_assert!(pick(HashKey(key), c()).is_some());
    }

    #[test]
    fn header_session_key_is_injective(a in proptest::collection::vec(proptest::option::of("[ -~]{0,6}"), 3), b in proptest::collection::vec(proptest::option::of("[ -~]{0,6}"), 3)) {
        let entries: Vec<SessionHeader> = ["x-a", "x-b", "x-c"].iter().map(|e| SessionHeader::parse(e).unwrap()).collect();
        let map = |vals: &[Option<String>]| {
            let mut h = http::HeaderMap::new();
            for (name, v) in ["x-a", "x-b", "x-c"].iter().zip(vals) {
                if let Some(v) = v {
                    if let Ok(v) = http::HeaderValue::from_str(v) {
                        h.insert(*name, v);
                    }
                }
            }
            h
        };
        let (ha, hb) = (map(&a), map(&b));
        let (ka, kb) = (session_bytes(&entries, &ha, &[], false), session_bytes(&entries, &hb, &[], false));
        let same_values = ["x-a", "x-b", "x-c"].iter().all(|n| ha.get(*n) == hb.get(*n));
        prop_assert_eq!(ka == kb, same_values);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn rendezvous_respects_weights(weights in proptest::collection::vec(0.1f64..1.0, 2..6)) {
        let n = 20_000u64;
        let mut counts = vec![0u64; weights.len()];
        for k in 0..n {
            let key = HashKey(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555);
            let c = weights.iter().enumerate().map(|(i, &w)| (i, 1000 + i as u64, w));
            counts[pick(key, c).unwrap()] += 1;
        }
        let total: f64 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let share = counts[i] as f64 / n as f64;
            prop_assert!((share - w / total).abs() < 0.03, "endpoint {} share {} expected {}", i, share, w / total);
        }
    }
}
