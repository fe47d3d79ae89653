//! Small typed values that the YAML spells as strings: monitor status codes and session headers.

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
