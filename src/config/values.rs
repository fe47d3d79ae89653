//! Small typed values that the YAML spells as strings or short lists: monitor status codes,
//! session headers, and the statuses a balancer retries on.

use std::fmt;

/// A monitor's `expected_codes`: `"200"`, `"2xx"`, or a comma list such as `"200,204,3xx"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedCodes(Vec<CodeMatch>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeMatch {
    Exact(u16),
    Class(u16),
}

impl Default for ExpectedCodes {
    /// `2xx`, Cloudflare's default.
    fn default() -> Self {
        ExpectedCodes(vec![CodeMatch::Class(2)])
    }
}

impl ExpectedCodes {
    /// Parses the list; every item is a status 100..599 or a class `1xx`..`5xx`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim) {
            let m = match item.as_bytes() {
                [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
                    CodeMatch::Class(u16::from(d - b'0'))
                }
                _ => match item.parse::<u16>() {
                    Ok(code) if (100..=599).contains(&code) => CodeMatch::Exact(code),
                    _ => {
                        return Err(format!(
                            "has {item:?}, which is not a status code or a class like 2xx"
                        ))
                    }
                },
            };
            out.push(m);
        }
        Ok(ExpectedCodes(out))
    }

    /// True when `code` is one of the expected codes.
    pub fn matches(&self, code: u16) -> bool {
        self.0.iter().any(|m| match *m {
            CodeMatch::Exact(c) => c == code,
            CodeMatch::Class(c) => code / 100 == c,
        })
    }
}

/// The statuses a balancer's `retry_on_status` lists (SPEC §3.9), as a bitset over 500..=599, so
/// that asking whether an answer is retried is a shift and a mask on the request path, with
/// nothing allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryStatuses(u128);

impl RetryStatuses {
    /// The statuses that may be listed: only 5xx. A 4xx is the request's own fault and the same
    /// answer on every endpoint; a 429 asks the client to slow down, which a retry elsewhere
    /// would defeat.
    pub const RANGE: std::ops::RangeInclusive<u16> = 500..=599;

    /// Adds `code`; `Err` with the reason when it is outside [`RetryStatuses::RANGE`] or
    /// already listed.
    pub fn insert(&mut self, code: u16) -> Result<(), &'static str> {
        if !Self::RANGE.contains(&code) {
            return Err("is not a status tether retries on: only 500..599");
        }
        let bit = 1u128 << (code - Self::RANGE.start());
        if self.0 & bit != 0 {
            return Err("is listed twice");
        }
        self.0 |= bit;
        Ok(())
    }

    /// True when an answer with `code` is to be retried.
    #[inline]
    pub fn contains(self, code: u16) -> bool {
        match code.checked_sub(*Self::RANGE.start()) {
            Some(i) if i < 100 => self.0 & (1u128 << i) != 0,
            _ => false,
        }
    }

    /// Nothing listed: answers are never retried (the default, as Cloudflare).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The listed statuses in ascending order (for status pages, not the request path).
    pub fn to_vec(self) -> Vec<u16> {
        Self::RANGE.filter(|&c| self.contains(c)).collect()
    }
}

/// One entry of `session_affinity_attributes.headers` (SPEC §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionHeader {
    /// A request header, by lower-cased name.
    Header(String),
    /// `cookie:<a>,<b>`: the values of these request cookies.
    Cookies(Vec<String>),
    /// `cookie`: all request cookies.
    AllCookies,
}

fn check_name(name: &str) -> Result<(), String> {
    let ok_len = (1..=100).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(format!("name {name:?} must be 1..100 of A-Z a-z 0-9 _ -"))
    }
}

impl SessionHeader {
    /// Parses an entry; header names are case-insensitive and kept lower-cased.
    pub fn parse(entry: &str) -> Result<Self, String> {
        if entry.eq_ignore_ascii_case("cookie") {
            return Ok(SessionHeader::AllCookies);
        }
        if let Some(names) = entry
            .strip_prefix("cookie:")
            .or_else(|| entry.strip_prefix("Cookie:"))
        {
            let names: Vec<String> = names.split(',').map(|n| n.trim().to_string()).collect();
            for n in &names {
                check_name(n)?;
            }
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != names.len() {
                return Err("names a cookie twice".into());
            }
            return Ok(SessionHeader::Cookies(names));
        }
        check_name(entry)?;
        Ok(SessionHeader::Header(entry.to_ascii_lowercase()))
    }
}

impl fmt::Display for SessionHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionHeader::Header(name) => f.write_str(name),
            SessionHeader::Cookies(names) => write!(f, "cookie:{}", names.join(",")),
            SessionHeader::AllCookies => f.write_str("cookie"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_codes_lists_and_classes() {
        let c = ExpectedCodes::parse("200,204,3xx").unwrap();
        assert!(c.matches(200) && c.matches(204) && c.matches(302));
        assert!(!c.matches(201) && !c.matches(500));
        assert!(ExpectedCodes::parse("2xx").unwrap().matches(299));
        assert!(ExpectedCodes::parse("6xx").is_err());
        assert!(ExpectedCodes::parse("abc").is_err());
        assert!(ExpectedCodes::parse("").is_err());
    }

    #[test]
    fn retry_statuses_hold_5xx_once() {
        let mut r = RetryStatuses::default();
        assert!(r.is_empty());
        for code in [500, 503, 599] {
            r.insert(code).unwrap();
        }
        assert!(r.contains(500) && r.contains(503) && r.contains(599));
        assert!(!r.contains(502) && !r.contains(200) && !r.contains(0) && !r.contains(628));
        assert!(!r.contains(u16::MAX));
        assert_eq!(r.insert(503), Err("is listed twice"));
        assert!(r.insert(499).is_err() && r.insert(600).is_err() && r.insert(429).is_err());
        assert!(!r.is_empty());
    }

    #[test]
    fn session_header_entries() {
        assert_eq!(
            SessionHeader::parse("X-User").unwrap(),
            SessionHeader::Header("x-user".into())
        );
        assert_eq!(
            SessionHeader::parse("cookie").unwrap(),
            SessionHeader::AllCookies
        );
        assert_eq!(
            SessionHeader::parse("cookie:sid,cart").unwrap(),
            SessionHeader::Cookies(vec!["sid".into(), "cart".into()])
        );
        assert!(SessionHeader::parse("").is_err());
        assert!(SessionHeader::parse("bad header").is_err());
        assert!(SessionHeader::parse(&"a".repeat(101)).is_err());
        assert!(SessionHeader::parse("cookie:sid,sid").is_err());
        assert!(SessionHeader::parse("cookie:").is_err());
    }
}
