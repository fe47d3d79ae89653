//! Headers that tell an upstream who the client is (SPEC §3.7). `X-Forwarded-For`: every line
//! of it counts, for the client address as for the value sent upstream, and it is read as bytes,
//! since a client may put anything in it. The others ([`CLIENT_CLAIMS`]) are believed only from
//! `trusted_proxies`: from anyone else they are a client's claim about itself, and applications
//! commonly trust `X-Real-IP` for rate limits, allow-lists and audit logs.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::HeaderName;

/// Request headers by which a client could lie about its address, host, port or scheme to the
/// upstream; removed from what an untrusted peer sends. `X-Forwarded-For` is not among them: it
/// is kept and extended (the upstream sees the whole chain and where tether got it from), and
/// `X-Forwarded-Proto` is always set by tether.
pub const CLIENT_CLAIMS: [HeaderName; 4] = [
    http::header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
];

/// True when `headers` holds any of [`CLIENT_CLAIMS`]: one pass over the few names a request
/// has, cheaper than looking each claim up (a request rarely carries one).
pub fn has_client_claims<T>(headers: &http::HeaderMap<T>) -> bool {
    headers.keys().any(|k| CLIENT_CLAIMS.contains(k))
}

/// Appends `ip` as text: IPv4 in dotted decimal without `Ipv4Addr`'s padding-aware `Display`
/// (which runs the formatter four times; this runs on every request), IPv6 through `Display`.
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let (buf, n) = dotted(v4);
            out.extend_from_slice(&buf[..n]);
        }
        // Writing an address into a Vec cannot fail.
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// Every octet's decimal text, left-aligned in four bytes (`"7.  "`), and its length: three
/// table reads and copies print an address (this runs up to three times per request).
const OCTETS: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut v = 0;
    while v < 256 {
        let (h, te, o) = ((v / 100) as u8, (v / 10 % 10) as u8, (v % 10) as u8);
        t[v] = if v >= 100 {
            ([b'0' + h, b'0' + te, b'0' + o, b'.'], 3)
        } else if v >= 10 {
            ([b'0' + te, b'0' + o, b'.', 0], 2)
        } else {
            ([b'0' + o, b'.', 0, 0], 1)
        };
        v += 1;
    }
    t
};

/// `v4` in dotted decimal: the text is the first `n` bytes of the buffer.
fn dotted(v4: Ipv4Addr) -> ([u8; 19], usize) {
    // Four bytes per octet (its digits and the dot), each written at the end of the last.
    let mut buf = [0u8; 19];
    let mut n = 0;
    for octet in v4.octets() {
        let (text, len) = OCTETS[usize::from(octet)];
        buf[n..n + 4].copy_from_slice(&text);
        n += usize::from(len) + 1;
    }
    // The last octet's dot is not part of the address.
    (buf, n - 1)
}

/// The `X-Real-IP` value for `client` (the address after `trusted_proxies`), in one buffer sized
/// for the longest address text.
pub fn real_ip_value(client: IpAddr) -> Vec<u8> {
    // "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" is the longest an address prints.
    let mut out = Vec::with_capacity(45);
    write_ip(&mut out, client);
    out
}

/// One hop of the chain: an address, `ip:port` or `[v6]:port` (some proxies add the port);
/// `None` when it is none of these.
pub fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(hop.trim_ascii()).ok()?;
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

/// The client behind a trusted proxy: walking the hops of all `lines` (in the order received)
/// from the right, the first that is not `trusted`. A hop that does not parse ends the walk with
/// `None`, since nothing to its left can be believed. Allocates nothing.
pub fn client_from<'a, L>(lines: L, trusted: impl Fn(IpAddr) -> bool) -> Option<IpAddr>
where
    L: DoubleEndedIterator<Item = &'a [u8]>,
{
    for hop in lines.rev().flat_map(|line| line.rsplit(|&b| b == b',')) {
        let ip = parse_hop(hop)?;
        if !trusted(ip) {
            return Some(ip);
        }
    }
    None
}

/// Writes the upstream `X-Forwarded-For` into `out`: every received line (`lines()` gives them
/// in order) as sent, less surrounding whitespace, joined with `, `, then `peer`. One buffer,
/// sized once.
pub fn upstream_value<'a, L>(lines: impl Fn() -> L, peer: IpAddr, out: &mut Vec<u8>)
where
    L: Iterator<Item = &'a [u8]>,
{
    out.reserve(lines().map(|l| l.len() + 2).sum::<usize>() + 39);
    for line in lines() {
        let line = line.trim_ascii();
        if !line.is_empty() {
            out.extend_from_slice(line);
            out.extend_from_slice(b", ");
        }
    }
    write_ip(out, peer);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn hops_with_ports_parse_as_their_address() {
        assert_eq!(parse_hop(b" 203.0.113.9 "), ip("203.0.113.9"));
        assert_eq!(parse_hop(b"203.0.113.9:4711"), ip("203.0.113.9"));
        assert_eq!(parse_hop(b"2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(parse_hop(b"[2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(parse_hop(b"[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(parse_hop(b"::ffff:10.0.0.1"), ip("10.0.0.1"));
        for bad in [
            &b""[..],
            b"unknown",
            b"1.2.3.4:x",
            b"[::1",
            b"caf\xc3\xa9",
            b"\xff",
        ] {
            assert_eq!(parse_hop(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rightmost_untrusted_hop_wins_across_lines() {
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        let walk = |lines: &[&[u8]]| client_from(lines.iter().copied(), trusted);
        assert_eq!(
            walk(&[b"203.0.113.9, 198.51.100.1", b"10.0.0.2"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            walk(&[b"198.51.100.1:5000", b"10.0.0.2:1"]),
            ip("198.51.100.1")
        );
        assert_eq!(walk(&[b"10.0.0.1"]), None);
        assert_eq!(walk(&[b"garbage", b"10.0.0.1"]), None);
        assert_eq!(
            walk(&[b"garbage, 203.0.113.7", b"10.0.0.1"]),
            ip("203.0.113.7")
        );
        assert_eq!(walk(&[b"[2001:db8::1]:80"]), ip("2001:db8::1"));
        assert_eq!(walk(&[]), None);
    }

    #[test]
    fn real_ip_is_the_address_text_in_one_buffer() {
        for a in [
            "192.0.2.1",
            "2001:db8::7",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.254",
        ] {
            let v = real_ip_value(a.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
            assert_eq!(String::from_utf8_lossy(&v), a);
            assert!(v.len() <= 45, "{a}");
        }
    }

    #[test]
    fn dotted_quads_print_as_display_does() {
        for v in 0..=255u8 {
            for v4 in [Ipv4Addr::new(v, 0, v, 255), Ipv4Addr::new(9, v, 100, v)] {
                let (buf, n) = dotted(v4);
                assert_eq!(&buf[..n], v4.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn client_claims_are_found_by_any_case() {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("host", "a".parse().unwrap());
        assert!(!has_client_claims(&h));
        h.insert("X-Forwarded-Port", "1".parse().unwrap());
        assert!(has_client_claims(&h));
    }

    #[test]
    fn upstream_value_joins_every_line_then_the_peer() {
        let peer = IpAddr::from([192, 0, 2, 1]);
        let value = |lines: &[&[u8]]| {
            let mut out = Vec::new();
            upstream_value(|| lines.iter().copied(), peer, &mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        assert_eq!(value(&[]), "192.0.2.1");
        assert_eq!(
            value(&[b"203.0.113.9", b" 198.51.100.1, 10.0.0.2 "]),
            "203.0.113.9, 198.51.100.1, 10.0.0.2, 192.0.2.1"
        );
        assert_eq!(value(&[b"", b"a:1"]), "a:1, 192.0.2.1");
    }
}
