//! The admin API's request path, split and percent-decoded (SPEC §4): every endpoint the page
//! shows can be drained from it, whatever characters its name needs encoding for (`b c` arrives
//! as `b%20c`).
//!
//! A segment is decoded once, on its own, after the split: a decoded `/` (`%2F`) would otherwise
//! make one segment look like two, so it is refused, as is anything that does not decode to UTF-8
//! text. Refused paths answer 404, the same as a path that names nothing.

use std::borrow::Cow;

use smallvec::SmallVec;

/// The decoded segments of an admin path; on the stack for every path the API knows (at most
/// five segments).
pub type Segments<'a> = SmallVec<[Cow<'a, str>; 5]>;

/// The segments of `path` (its leading `/` dropped), each percent-decoded; `None` when any
/// segment has a malformed escape, decodes to bytes that are not UTF-8, or decodes to a `/`.
/// A segment without `%` is borrowed, not copied.
pub fn segments(path: &str) -> Option<Segments<'_>> {
    path.trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect()
}

/// One segment, percent-decoded (RFC 3986 §2.1: `%` and two hex digits, either case).
fn decode(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let mut out = Vec::with_capacity(segment.len());
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = bytes.next().and_then(hex)?;
        let lo = bytes.next().and_then(hex)?;
        out.push(hi << 4 | lo);
    }
    if out.contains(&b'/') {
        return None;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(path: &str) -> Option<Vec<String>> {
        segments(path).map(|s| s.iter().map(|c| c.to_string()).collect())
    }

    #[test]
    fn segments_are_decoded_after_the_split() {
        assert_eq!(
            split("/pools/web/endpoints/b%20c/drain").unwrap(),
            ["pools", "web", "endpoints", "b c", "drain"]
        );
        assert_eq!(split("/").unwrap(), [""]);
        assert_eq!(split("/status").unwrap(), ["status"]);
        assert_eq!(split("/a%2b%2B%25").unwrap(), ["a++%"]);
        assert_eq!(split("/caf%C3%A9").unwrap(), ["café"]);
        // Already decoded text passes as it is: only `%` starts an escape.
        assert_eq!(split("/a+b c").unwrap(), ["a+b c"]);
    }

    #[test]
    fn decoded_slash_and_bad_escapes_are_refused() {
        for bad in [
            "/pools/web/endpoints/b%2Fc/drain",
            "/pools/web/endpoints/b%2fc/drain",
            "/x%",
            "/x%2",
            "/x%zz",
            "/x%+1",
            "/%C3",
            "/%FF",
            "/%C3%28",
        ] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }

    #[test]
    fn plain_segments_are_borrowed() {
        let s = segments("/pools/web/endpoints/a/drain").unwrap();
        assert!(s.iter().all(|c| matches!(c, Cow::Borrowed(_))));
        assert!(!s.spilled());
    }
}
