//! Property tests of the pure core: the cookie token, cookie-header parsing, rendezvous hashing,
//! the header session key, and the importer's output read back. No sockets.

#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{json, Value};

use tether::affinity::cookies::{cflb_values, has_cflb, push_without_cflb};
use tether::affinity::header_key::session_bytes;
use tether::affinity::rendezvous::{pick, HashKey};
use tether::affinity::token::{CookieKeys, TokenError};
use tether::affinity::EndpointId;
use tether::config::printable::is_unprintable;
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

/// Text an export may carry in any string: words, YAML syntax, every line break YAML knows,
/// control characters, invisible characters, and lines that would be configuration if a comment
/// or a scalar ended early.
fn export_text() -> impl Strategy<Value = String> {
    let syntax = proptest::sample::select(vec![
        "\n",
        "\r",
        "\r\n",
        "\u{85}",
        "\u{2028}",
        "\u{2029}",
        "\t",
        "\0",
        "\u{1b}[2J",
        "\u{7f}",
        "\u{9b}",
        "\u{feff}",
        "\u{202e}",
        "#",
        ": ",
        "- ",
        "'",
        "\"",
        "\\",
        "{",
        "}",
        "[",
        "]",
        "&a",
        "*a",
        "!!str",
        "|",
        ">",
        "%",
        "@",
        "`",
        "---",
        "...",
        "? ",
        " ",
        "  ",
    ]);
    let lines = proptest::sample::select(vec![
        "trusted_proxies: [0.0.0.0/0]",
        "    - name: injected-origin",
        "      address: 127.0.0.1:9",
        "  - id: injected-pool",
        "admin: {address: 0.0.0.0:9901}",
        "      tls: {enabled: true, verify: false}",
    ]);
    let piece = prop_oneof![
        "[a-zA-Z0-9 ]{0,8}",
        syntax.prop_map(String::from),
        lines.prop_map(String::from),
        any::<char>().prop_map(String::from),
    ];
    let mixed = proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat());
    // Only words and the breaks serde_yaml writes raw: literal scalars, where a break the writer
    // does not see as one would end the scalar early.
    let breaks = proptest::collection::vec(
        (
            "[a-z:# -]{0,10}",
            proptest::sample::select(vec!["\n", "\u{2028}", "\u{2029}"]),
        ),
        1..6,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(w, b)| format!("{w}{b}"))
            .collect::<String>()
            + "x: y"
    });
    prop_oneof![2 => mixed, 1 => breaks]
}

/// Export text with only printable characters: what a name may be.
fn name_text() -> impl Strategy<Value = String> {
    export_text().prop_map(|s| s.chars().filter(|&c| !is_unprintable(c)).collect())
}

/// A file name: anything Linux allows (no `/`, no NUL), after a prefix that keeps it distinct.
fn file_text() -> impl Strategy<Value = String> {
    export_text().prop_map(|s| {
        let s: String = s.chars().filter(|&c| c != '/' && c != '\0').collect();
        s.chars().take(60).collect()
    })
}

/// One generated export: a monitor, pools with origins, one balancer, in three files.
#[derive(Debug, Clone)]
struct Export {
    files: [String; 3],
    text: [String; 8],
    pools: Vec<(String, Vec<String>)>,
    balancer: String,
    /// An unprintable character put inside one name (an index over every name).
    poison: Option<(proptest::sample::Index, char)>,
}

fn export() -> impl Strategy<Value = Export> {
    let pools = proptest::collection::vec(
        (name_text(), proptest::collection::vec(name_text(), 1..3)),
        1..4,
    );
    let poison = proptest::option::weighted(
        0.25,
        (
            any::<proptest::sample::Index>(),
            proptest::sample::select(vec![
                '\0', '\n', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{2028}', '\u{feff}',
                '\u{202e}',
            ]),
        ),
    );
    let files = [file_text(), file_text(), file_text()];
    let text = proptest::array::uniform8(export_text());
    (files, text, pools, name_text(), poison).prop_map(|(files, text, pools, balancer, poison)| {
        Export {
            files,
            text,
            pools,
            balancer,
            poison,
        }
    })
}

impl Export {
    /// Every name, mutably, in the order `poison` counts them.
    fn names_mut(&mut self) -> Vec<&mut String> {
        let mut names = Vec::new();
        for (pool, origins) in &mut self.pools {
            names.push(pool);
            names.extend(origins.iter_mut());
        }
        names.push(&mut self.balancer);
        names
    }

    /// The three JSON files, with every free text field set from `text`.
    fn json(&self) -> [Value; 3] {
        let t = &self.text;
        let monitor = json!({"result": [{"id": "m1", "type": "http", "description": t[0], "path": t[1],
            "expected_body": t[2], "header": {"Host": [t[3]]}, "probe_zone": t[4]}]});
        let pools: Vec<Value> = self.pools.iter().enumerate().map(|(i, (name, origins))| {
            let origins: Vec<Value> = origins.iter().enumerate().map(|(j, o)| json!({
                "name": o, "address": format!("192.0.2.{j}"), "port": 8080, "header": {"Host": [t[3]]},
            })).collect();
            json!({"id": format!("p{i}"), "name": name, "description": t[5], "monitor": "m1",
                "check_regions": [t[6]], "origins": origins})
        }).collect();
        let mut lb = json!({"id": "lb1", "name": self.balancer, "description": t[7],
            "default_pools": (0..self.pools.len()).map(|i| format!("p{i}")).collect::<Vec<_>>(),
            "region_pools": {t[6].clone(): ["p0"]}, "rules": [{"name": t[5]}]});
        lb[format!("x-{}", t[4])] = json!(t[7]);
        [monitor, json!({"result": pools}), json!({"result": [lb]})]
    }

    /// What the import must say, from the input alone: the config, or the JSON paths of the
    /// names it must refuse.
    fn expected(&self, monitor_id: &str) -> Result<serde_yaml::Value, Vec<String>> {
        let mut refused = Vec::new();
        let bad = |s: &str| s.trim().is_empty() || s.chars().any(is_unprintable);
        let mut taken = HashSet::new();
        let mut pools = Vec::new();
        for (i, (name, origins)) in self.pools.iter().enumerate() {
            if bad(name) {
                refused.push(format!("result[{i}].name"));
                continue;
            }
            let mut names = HashSet::new();
            let endpoints: Vec<Value> = origins
                .iter()
                .enumerate()
                .map(|(j, o)| {
                    let address = format!("192.0.2.{j}");
                    let name = if o.trim().is_empty() {
                        address.clone()
                    } else {
                        o.trim().to_string()
                    };
                    if bad(&name) {
                        refused.push(format!("result[{i}].origins[{j}].name"));
                    }
                    json!({"name": unique(&name, &mut names), "address": format!("{address}:8080"),
                    "weight": 1.0, "enabled": true, "header": {"Host": [self.text[3]]}})
                })
                .collect();
            pools.push(json!({"id": unique(name.trim(), &mut taken), "monitor": monitor_id,
                "minimum_origins": 1, "origin_steering": {"policy": "random"}, "endpoints": endpoints}));
        }
        if bad(&self.balancer) {
            refused.push("result[0].name".to_string());
        }
        if !refused.is_empty() {
            return Err(refused);
        }
        let ids: Vec<&Value> = pools.iter().map(|p| &p["id"]).collect();
        let t = &self.text;
        let mut monitor = json!({"id": monitor_id, "type": "http", "port": 0, "header": {"Host": [t[3]]},
            "interval": 60, "timeout": 5, "consecutive_up": 1, "consecutive_down": 1});
        for (field, v) in [("path", &t[1]), ("expected_body", &t[2])] {
            if !v.is_empty() {
                monitor[field] = json!(v);
            }
        }
        let doc = json!({
            "listeners": [{"address": "0.0.0.0:8080"}],
            "admin": {"address": "127.0.0.1:9901"},
            "cookie_secret": "${TETHER_COOKIE_SECRET}",
            "monitors": [monitor],
            "pools": pools,
            "load_balancers": [{"name": self.balancer.trim(), "default_pools": ids,
                "fallback_pool": ids.last(), "steering_policy": "off", "session_affinity": "none",
                "session_affinity_attributes": {"samesite": "Auto", "secure": "Auto", "drain_duration": 0,
                    "zero_downtime_failover": "none"},
                "adaptive_routing": {"failover_across_pools": false}}],
        });
        Ok(serde_yaml::to_value(doc).unwrap())
    }
}

/// The importer's renaming of a second use of a name: `x`, `x-2`, `x-3` …
fn unique(base: &str, taken: &mut HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// SPEC §6: whatever text an export holds — in descriptions, names, keys, notes, values or
    /// file names — the YAML the importer prints parses back to exactly the configuration the
    /// export maps to: nothing added at any level, no comment read as a key. A name that is not
    /// printable is refused, naming its JSON path.
    #[test]
    fn imported_yaml_reads_back_as_exactly_the_mapped_config(mut input in export()) {
        if let Some((at, c)) = input.poison {
            let mut names = input.names_mut();
            let name = names.remove(at.index(names.len()));
            *name = format!("a{c}b{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<std::path::PathBuf> = input.json().iter().zip(&input.files).enumerate().map(|(i, (doc, name))| {
            let path = dir.path().join(format!("{i}{name}"));
            std::fs::write(&path, doc.to_string()).unwrap();
            path
        }).collect();
        let out = tether::import::cloudflare(&files, tether::import::Options::default());
        match (out, input.expected("?")) {
            (Ok(out), Ok(_)) => {
                let read: serde_yaml::Value = serde_yaml::from_str(&out.yaml).unwrap();
                let monitor_id = read["monitors"][0]["id"].as_str().unwrap().to_string();
                prop_assert!(monitor_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{}", monitor_id);
                prop_assert_eq!(read, input.expected(&monitor_id).unwrap(), "{}", out.yaml);
            }
            (Err(errs), Err(refused)) => {
                let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
                prop_assert_eq!(paths, refused, "{:?}", errs);
            }
            (out, expected) => prop_assert!(false, "import gave {:?}, expected {:?}", out.map(|o| o.yaml), expected),
        }
    }
}
