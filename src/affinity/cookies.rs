//! Reading `__cflb` from request `Cookie` headers, removing it before the upstream, and writing
//! the `Set-Cookie` header of a new pin (SPEC §3.1).

use cookie::time::{Duration, OffsetDateTime};
use cookie::{Cookie, SameSite as CookieSameSite};

use crate::config::{SameSite, Secure};

/// The affinity cookie's name, as Cloudflare's.
pub const COOKIE_NAME: &str = "__cflb";

/// `(name, value)` of each cookie in one `Cookie` header value, in order, as sent.
///
/// Works on bytes: browsers send raw UTF-8 (and some clients Latin-1) in cookie values, and one
/// such byte must not hide the header's other cookies (SPEC §3.7).
pub fn pairs(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    raw.split(|&b| b == b';').filter_map(|item| {
        let (name, value) = split_eq(item)?;
        Some((name, trim_quotes(value)))
    })
}

/// An item's name and value around its first `=`, each without surrounding whitespace.
fn split_eq(item: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = item.iter().position(|&b| b == b'=')?;
    Some((item[..eq].trim_ascii(), item[eq + 1..].trim_ascii()))
}

fn trim_quotes(mut v: &[u8]) -> &[u8] {
    while let [b'"', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b'"'] = v {
        v = rest;
    }
    v
}

/// The `__cflb` values of a request, in the order the client sent them.
pub fn cflb_values<'a>(headers: &'a [&'a [u8]]) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .flat_map(|h| pairs(h))
        .filter(|(name, _)| *name == COOKIE_NAME.as_bytes())
        .map(|(_, value)| value)
}

fn is_cflb(item: &[u8]) -> bool {
    split_eq(item).is_some_and(|(n, _)| n == COOKIE_NAME.as_bytes())
}

/// True when the header value carries a `__cflb` cookie. Allocates nothing: it runs on every
/// request.
pub fn has_cflb(raw: &[u8]) -> bool {
    raw.split(|&b| b == b';').any(is_cflb)
}

/// Appends the header value's cookies other than `__cflb` to `out`, `; `-separated; a value
/// without `__cflb` is appended as it is. Every other byte of the header is kept: only the
/// whitespace around a removed cookie's separators is normalised. Builds the upstream `Cookie`
/// in one buffer, without a `Vec` per header (this runs on every request that carries a pin).
pub fn push_without_cflb(raw: &[u8], out: &mut Vec<u8>) {
    let mut push = |item: &[u8]| {
        if !item.is_empty() {
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(item);
        }
    };
    if !has_cflb(raw) {
        push(raw);
        return;
    }
    for item in raw.split(|&b| b == b';').filter(|i| !is_cflb(i)) {
        push(item.trim_ascii());
    }
}

/// The cookie attributes a load balancer asks for, resolved against one request.
#[derive(Debug, Clone, Copy)]
pub struct CookieAttributes {
    pub secure: Secure,
    pub samesite: SameSite,
    pub always_use_https: bool,
}

impl CookieAttributes {
    /// `Secure` per SPEC §3.1: `Auto` means the request came over TLS or HTTPS is enforced.
    pub fn secure_for(&self, tls: bool) -> bool {
        match self.secure {
            Secure::Always => true,
            Secure::Never => false,
            Secure::Auto => tls || self.always_use_https,
        }
    }

    /// `SameSite` per SPEC §3.1: `Auto` means `None` when Secure is set, else `Lax`.
    pub fn samesite_for(&self, secure: bool) -> CookieSameSite {
        match self.samesite {
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::None => CookieSameSite::None,
            SameSite::Auto if secure => CookieSameSite::None,
            SameSite::Auto => CookieSameSite::Lax,
        }
    }
}

/// The `Set-Cookie` value of a new pin that lasts until `expires` (unix seconds).
pub fn set_cookie(
    token: &str,
    attrs: CookieAttributes,
    tls: bool,
    now: u64,
    expires: u64,
) -> String {
    let secure = attrs.secure_for(tls);
    let at =
        OffsetDateTime::from_unix_timestamp(expires as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Cookie::build((COOKIE_NAME, token))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(attrs.samesite_for(secure))
        .max_age(Duration::seconds(expires.saturating_sub(now) as i64))
        .expires(at)
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header value as the proxy forwards it: `None` when it has no `__cflb` (forwarded
    /// as it is), else without its `__cflb` cookies.
    fn strip_cflb(raw: &[u8]) -> Option<Vec<u8>> {
        has_cflb(raw).then(|| {
            let mut kept = Vec::new();
            push_without_cflb(raw, &mut kept);
            kept
        })
    }

    #[test]
    fn finds_cflb_values_in_order_across_headers() {
        let headers: [&[u8]; 2] = [b"a=1; __cflb=first", b"__cflb=second;b=2"];
        assert_eq!(
            cflb_values(&headers).collect::<Vec<_>>(),
            vec![&b"first"[..], b"second"]
        );
    }

    #[test]
    fn non_ascii_bytes_are_parsed_like_any_other() {
        let utf8 = "__cflb=tok; name=caf\u{e9}; x=\u{1F600}".as_bytes();
        let latin1: &[u8] = b"y=\xe9t\xe9; __cflb=tok2";
        let headers = [utf8, latin1];
        assert_eq!(
            cflb_values(&headers).collect::<Vec<_>>(),
            vec![&b"tok"[..], b"tok2"]
        );
        assert_eq!(
            strip_cflb(utf8).as_deref(),
            Some("name=caf\u{e9}; x=\u{1F600}".as_bytes())
        );
        assert_eq!(strip_cflb(latin1).as_deref(), Some(&b"y=\xe9t\xe9"[..]));
    }

    #[test]
    fn strip_keeps_other_cookies_exactly() {
        let strip = |s: &str| strip_cflb(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(strip("a=1; b=x%20y"), None);
        assert_eq!(
            strip("a=1; __cflb=t; b=x%20y").as_deref(),
            Some("a=1; b=x%20y")
        );
        assert_eq!(strip("__cflb=t").as_deref(), Some(""));
        assert_eq!(
            strip("__cflb=t;__cflb=u; c=\"q\"").as_deref(),
            Some("c=\"q\"")
        );
        assert_eq!(strip("x__cflb=1").as_deref(), None);
    }

    #[test]
    fn set_cookie_attributes() {
        let a = CookieAttributes {
            secure: Secure::Auto,
            samesite: SameSite::Auto,
            always_use_https: false,
        };
        let plain = set_cookie("tok", a, false, 1_000, 83_800);
        assert!(plain.starts_with("__cflb=tok"), "{plain}");
        assert!(
            plain.contains("HttpOnly")
                && plain.contains("Path=/")
                && plain.contains("Max-Age=82800")
        );
        assert!(
            plain.contains("SameSite=Lax") && !plain.contains("Secure"),
            "{plain}"
        );
        assert!(plain.contains("Expires="), "{plain}");
        let tls = set_cookie("tok", a, true, 1_000, 83_800);
        assert!(
            tls.contains("Secure") && tls.contains("SameSite=None"),
            "{tls}"
        );
        let never = CookieAttributes {
            secure: Secure::Never,
            samesite: SameSite::Strict,
            always_use_https: true,
        };
        let s = set_cookie("tok", never, true, 0, 10);
        assert!(
            !s.contains("Secure") && s.contains("SameSite=Strict"),
            "{s}"
        );
    }
}
