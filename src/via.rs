//! Loops (SPEC §3.7, "a loop is not an amplifier"): every request tether forwards carries
//! `Via: <version> tether-<instance id>`, so a request that comes back to the same process —
//! through an endpoint that resolves to tether, a port forward, another proxy — is recognised
//! on its second pass and answered 508 instead of being forwarded again until connections run
//! out. The admin API refuses such a request too (SPEC §4).
//!
//! The id is per process and random, so two tethers in a chain (or the old and new process of a
//! graceful upgrade) never take each other's requests for a loop.

use http::{HeaderValue, Version};

/// Hex digits in an instance id (64 random bits).
const ID_LEN: usize = 16;

/// This process's instance id and the `Via` values that carry it, computed once.
#[derive(Debug, Clone)]
pub struct InstanceId {
    /// `tether-<id>`: the `received-by` of our `Via` entries.
    token: String,
    /// `Via` values per received protocol (RFC 9110 §7.6.3): HTTP/1.0, HTTP/1.1, HTTP/2.
    via: [HeaderValue; 3],
}

impl InstanceId {
    /// A fresh id from the operating system's random generator.
    pub fn random() -> InstanceId {
        let mut bytes = [0u8; ID_LEN / 2];
        if getrandom::fill(&mut bytes).is_err() {
            // The id is not a secret, only distinct per process: the pid and the clock are
            // distinct enough when the kernel's generator cannot be read.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let mixed = (u64::from(std::process::id()) << 32) ^ u64::from(nanos);
            bytes = mixed.to_be_bytes();
        }
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; ID_LEN / 2]) -> InstanceId {
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("tether-{id}");
        // Hex and ASCII: always a valid header value.
        let value = |proto: &str| {
            HeaderValue::from_str(&format!("{proto} {token}"))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 tether"))
        };
        InstanceId {
            via: [value("1.0"), value("1.1"), value("2")],
            token,
        }
    }

    /// The id alone (hex), as `/status` shows it.
    pub fn as_str(&self) -> &str {
        &self.token["tether-".len()..]
    }

    /// `tether-<id>`, as it appears in `Via`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The `Via` entry to add to a request received as `version`; cloning it does not copy.
    pub fn via_for(&self, version: Version) -> &HeaderValue {
        match version {
            Version::HTTP_09 | Version::HTTP_10 => &self.via[0],
            Version::HTTP_2 | Version::HTTP_3 => &self.via[2],
            _ => &self.via[1],
        }
    }

    /// True when any of the `Via` field lines names this instance as a `received-by`: exactly
    /// our token, not one that merely starts with it. Allocates nothing.
    pub fn seen_in<'a>(&self, lines: impl IntoIterator<Item = &'a [u8]>) -> bool {
        let token = self.token.as_bytes();
        lines.into_iter().any(|line| {
            line.split(|&b| b == b',').any(|entry| {
                // `received-protocol RWS received-by [ RWS comment ]`
                let mut words = entry
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty());
                words
                    .nth(1)
                    .is_some_and(|by| by.eq_ignore_ascii_case(token))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> InstanceId {
        InstanceId::from_bytes([0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89])
    }

    #[test]
    fn id_is_sixteen_hex_digits_and_differs_per_instance() {
        let (a, b) = (InstanceId::random(), InstanceId::random());
        assert_eq!(a.as_str().len(), 16);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.token(), format!("tether-{}", a.as_str()));
    }

    #[test]
    fn via_names_the_protocol_received() {
        let id = id();
        assert_eq!(
            id.via_for(Version::HTTP_11).to_str().ok(),
            Some("1.1 tether-abcdef0123456789")
        );
        assert_eq!(
            id.via_for(Version::HTTP_10).to_str().ok(),
            Some("1.0 tether-abcdef0123456789")
        );
        assert_eq!(
            id.via_for(Version::HTTP_2).to_str().ok(),
            Some("2 tether-abcdef0123456789")
        );
    }

    #[test]
    fn our_token_is_found_in_any_line_and_entry_exactly() {
        let id = id();
        let seen = |lines: &[&[u8]]| id.seen_in(lines.iter().copied());
        assert!(seen(&[b"1.1 tether-abcdef0123456789"]));
        assert!(seen(&[b"1.0 fred, 1.1 tether-abcdef0123456789 (Pingora)"]));
        assert!(seen(&[b"1.1 a", b"HTTP/2 TETHER-ABCDEF0123456789"]));
        assert!(seen(&[b"  1.1\ttether-abcdef0123456789  ,1.1 b"]));
        // Another instance, a longer id, our id as a protocol or in a comment: not ours.
        assert!(!seen(&[b"1.1 tether-0000000000000000"]));
        assert!(!seen(&[b"1.1 tether-abcdef0123456789ff"]));
        assert!(!seen(&[b"1.1 tether-abcdef012345678"]));
        assert!(!seen(&[b"tether-abcdef0123456789"]));
        assert!(!seen(&[b"1.1 proxy (tether-abcdef0123456789)"]));
        assert!(!seen(&[]));
    }
}
