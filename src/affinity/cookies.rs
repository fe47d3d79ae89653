//! Reading `__cflb` from request `Cookie` headers, removing it before the upstream, and writing
//! the `Set-Cookie` header of a new pin (SPEC §3.1).

use cookie::time::{Duration, OffsetDateTime};
use cookie::{Cookie, SameSite as CookieSameSite};

use crate::config::{SameSite, Secure};

/// The affinity cookie's name, as Cloudflare's.
pub const COOKIE_NAME: &str = "__cflb";

/// `(name, value)` of each cookie in one `Cookie` header value, in order, as sent.
pub fn pairs(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.split(';').filter_map(|item| {
        let item = item.trim();
        let (name, value) = item.split_once('=')?;
        Some((name.trim(), value.trim().trim_matches('"')))
    })
}

/// The `__cflb` values of a request, in the order the client sent them.
pub fn cflb_values<'a>(headers: &'a [&'a str]) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .flat_map(|h| pairs(h))
        .filter(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

fn is_cflb(item: &str) -> bool {
    item.trim()
        .split_once('=')
        .is_some_and(|(n, _)| n.trim() == COOKIE_NAME)
}

/// True when the header value carries a `__cflb` cookie.
pub fn has_cflb(raw: &str) -> bool {
    raw.split(';').any(is_cflb)
}

/// Appends the header value's cookies other than `__cflb` to `out`, `; `-separated; a value
/// without `__cflb` is appended as it is. Builds the upstream `Cookie` in one buffer, without a
/// `Vec` per header (this runs on every request that carries a pin).
pub fn push_without_cflb(raw: &str, out: &mut String) {
    let mut push = |item: &str| {
        if !item.is_empty() {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(item);
        }
    };
    if !has_cflb(raw) {
        push(raw);
        return;
    }
    for item in raw.split(';').filter(|i| !is_cflb(i)) {
        push(item.trim());
    }
}

/// The header value without its `__cflb` cookies: `None` when it has none (forward it as is),
/// `Some("")` when nothing else is left (drop the header). Other cookies keep their exact text.
pub fn strip_cflb(raw: &str) -> Option<String> {
    if !has_cflb(raw) {
        return None;
    }
    let mut kept = String::with_capacity(raw.len());
    push_without_cflb(raw, &mut kept);
    Some(kept)
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

    #[test]
    fn finds_cflb_values_in_order_across_headers() {
        let headers = ["a=1; __cflb=first", "__cflb=second;b=2"];
        assert_eq!(
            cflb_values(&headers).collect::<Vec<_>>(),
            vec!["first", "second"]
        );
    }

    #[test]
    fn strip_keeps_other_cookies_exactly() {
        assert_eq!(strip_cflb("a=1; b=x%20y"), None);
        assert_eq!(
            strip_cflb("a=1; __cflb=t; b=x%20y").as_deref(),
            Some("a=1; b=x%20y")
        );
        assert_eq!(strip_cflb("__cflb=t").as_deref(), Some(""));
        assert_eq!(
            strip_cflb("__cflb=t;__cflb=u; c=\"q\"").as_deref(),
            Some("c=\"q\"")
        );
        assert_eq!(strip_cflb("x__cflb=1").as_deref(), None);
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
