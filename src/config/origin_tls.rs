//! Origin TLS (SPEC §3.8): the `tls:` block of a pool and of an endpoint, how the two combine,
//! and their validation. Loading the CA into a Pingora peer is `proxy::origin`'s job.

use std::sync::Arc;

use pingora::protocols::tls::CaType;
use serde::Deserialize;

use super::error::ConfigError;

/// `tls:` as written on a pool or an endpoint. Every field is optional so that an endpoint's
/// block overrides only what it names; the pool's block supplies the rest, then the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginTlsConfig {
    /// Reach the endpoint over TLS. Default false.
    pub enabled: Option<bool>,
    /// The server name sent (SNI) and checked against the certificate. Default: the endpoint's
    /// Host override, else the host part of its address.
    pub sni: Option<String>,
    /// Check the certificate's chain and name. Default true.
    pub verify: Option<bool>,
    /// PEM file of the CAs to trust instead of the system roots.
    pub ca_path: Option<String>,
}

/// An endpoint's origin TLS settings after the endpoint's block, the pool's block and the
/// defaults were combined; `sni` is always a non-empty name, and `ca` holds `ca_path`'s
/// certificates as validation read them.
#[derive(Debug, Clone)]
pub struct OriginTls {
    pub enabled: bool,
    pub sni: String,
    pub verify: bool,
    pub ca_path: Option<String>,
    pub ca: Option<Arc<CaType>>,
}

impl OriginTls {
    /// Combines `endpoint` over `pool` over the defaults. `host` is the endpoint's Host override
    /// and `address` its `host:port`, for the SNI default. The CA list is left to the caller.
    pub fn resolve(
        endpoint: Option<&OriginTlsConfig>,
        pool: Option<&OriginTlsConfig>,
        host: Option<&str>,
        address: &str,
    ) -> OriginTls {
        let pick = |f: fn(&OriginTlsConfig) -> Option<&_>| {
            endpoint.and_then(f).or_else(|| pool.and_then(f))
        };
        let enabled = pick(|t| t.enabled.as_ref()).copied().unwrap_or(false);
        let verify = pick(|t| t.verify.as_ref()).copied().unwrap_or(true);
        let sni = endpoint
            .and_then(|t| t.sni.as_deref())
            .or_else(|| pool.and_then(|t| t.sni.as_deref()))
            // RFC 6066: the name is sent without its trailing dot; the check ignores it too.
            .map(|s| s.strip_suffix('.').unwrap_or(s))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| default_sni(host, address));
        let ca_path = endpoint
            .and_then(|t| t.ca_path.clone())
            .or_else(|| pool.and_then(|t| t.ca_path.clone()));
        OriginTls {
            enabled,
            sni,
            verify,
            ca_path,
            ca: None,
        }
    }
}

/// The host of the Host override, else of the address: no port, no brackets around an IPv6
/// literal, no trailing dot. An IP literal stays as it is: it is checked against the
/// certificate's IP SANs and never sent as SNI (RFC 6066), for IPv4 and IPv6 alike.
fn default_sni(host: Option<&str>, address: &str) -> String {
    bare_host(host.unwrap_or(address)).to_string()
}

/// `[v6]:port`, `[v6]`, `v6`, `name:port` or `name` → the host alone, without a trailing dot.
fn bare_host(authority: &str) -> &str {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(v6, _)| v6)
    } else if authority.parse::<std::net::Ipv6Addr>().is_ok() {
        authority
    } else {
        match authority.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => authority,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Reads a PEM file of certificates; the error says why it cannot serve as a CA list.
pub fn read_ca_file(path: &str) -> Result<Vec<pingora::tls::x509::X509>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let certs = pingora::tls::x509::X509::stack_from_pem(&pem)
        .map_err(|e| format!("is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// Checks one `tls:` block at `path` (`pools[0].tls`, `pools[0].endpoints[1].tls`); returns
/// its CA list when it names a `ca_path` that loads.
pub(super) fn validate(
    t: &OriginTlsConfig,
    path: &str,
    e: &mut Vec<ConfigError>,
) -> Option<Arc<CaType>> {
    if let Some(sni) = &t.sni {
        // One trailing dot (a fully qualified name) is allowed; an empty label is not.
        let name = sni.strip_suffix('.').unwrap_or(sni);
        let ok = !name.is_empty()
            && name.len() <= 253
            && !name.split('.').any(str::is_empty)
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
        if !ok {
            e.push(ConfigError::invalid(
                format!("{path}.sni"),
                format!("{sni:?}"),
                "is not a server name",
            ));
        }
    }
    let ca = t.ca_path.as_ref()?;
    match read_ca_file(ca) {
        Ok(certs) => Some(Arc::new(certs.into_boxed_slice())),
        Err(reason) => {
            e.push(ConfigError::invalid(format!("{path}.ca_path"), ca, reason));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(enabled: Option<bool>, sni: Option<&str>, verify: Option<bool>) -> OriginTlsConfig {
        OriginTlsConfig {
            enabled,
            sni: sni.map(str::to_string),
            verify,
            ca_path: None,
        }
    }

    #[test]
    fn defaults_are_plain_verified_and_named_after_the_address() {
        let t = OriginTls::resolve(None, None, None, "origin.example:443");
        assert_eq!(
            (t.enabled, t.verify, t.sni.as_str()),
            (false, true, "origin.example")
        );
        let v6 = OriginTls::resolve(None, None, None, "[::1]:443");
        assert_eq!(v6.sni, "::1");
    }

    #[test]
    fn sni_defaults_to_the_host_override_without_its_port() {
        let t = OriginTls::resolve(None, None, Some("app.internal:8443"), "10.0.0.1:443");
        assert_eq!(t.sni, "app.internal");
        let t = OriginTls::resolve(None, None, Some("app.internal"), "10.0.0.1:443");
        assert_eq!(t.sni, "app.internal");
    }

    #[test]
    fn a_default_sni_is_the_bare_host_of_any_authority_form() {
        let cases = [
            // (Host override, address, SNI)
            (Some("[::1]:8443"), "10.0.0.1:443", "::1"),
            (Some("[::1]"), "10.0.0.1:443", "::1"),
            (Some("::1"), "10.0.0.1:443", "::1"),
            (Some("[2001:db8::7]:443"), "10.0.0.1:443", "2001:db8::7"),
            (Some("127.0.0.1:8443"), "10.0.0.1:443", "127.0.0.1"),
            (Some("app.internal.:8443"), "10.0.0.1:443", "app.internal"),
            (Some("app.internal."), "10.0.0.1:443", "app.internal"),
            (None, "[2001:db8::7]:443", "2001:db8::7"),
            (None, "origin.example.:443", "origin.example"),
            (None, "10.0.0.1:443", "10.0.0.1"),
        ];
        for (host, address, want) in cases {
            let t = OriginTls::resolve(None, None, host, address);
            assert_eq!(t.sni, want, "{host:?} {address:?}");
        }
    }

    #[test]
    fn an_explicit_sni_may_end_in_a_dot_which_is_dropped() {
        let endpoint = block(None, Some("origin.example."), None);
        let t = OriginTls::resolve(Some(&endpoint), None, None, "10.0.0.1:443");
        assert_eq!(t.sni, "origin.example");
        let mut errs = Vec::new();
        validate(&endpoint, "p", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        for bad in [".", "a..b", ".a", "a.."] {
            let mut errs = Vec::new();
            validate(&block(None, Some(bad), None), "p", &mut errs);
            assert_eq!(errs.len(), 1, "{bad:?} is refused");
        }
    }

    #[test]
    fn the_endpoint_block_wins_field_by_field_over_the_pool_block() {
        let pool = OriginTlsConfig {
            ca_path: Some("pool-ca.pem".into()),
            ..block(Some(true), Some("pool.example"), Some(false))
        };
        let endpoint = block(None, Some("own.example"), Some(true));
        let t = OriginTls::resolve(Some(&endpoint), Some(&pool), None, "10.0.0.1:443");
        assert_eq!(
            (t.enabled, t.sni.as_str(), t.verify, t.ca_path.as_deref()),
            (true, "own.example", true, Some("pool-ca.pem"))
        );
        let off = block(Some(false), None, None);
        let t = OriginTls::resolve(Some(&off), Some(&pool), None, "10.0.0.1:443");
        assert!(!t.enabled, "an endpoint may turn the pool's TLS off");
        assert_eq!(t.sni, "pool.example");
    }

    #[test]
    fn a_bad_sni_or_ca_path_is_refused_with_its_path() {
        let mut errs = Vec::new();
        let bad = OriginTlsConfig {
            ca_path: Some("/nonexistent/ca.pem".into()),
            ..block(None, Some("has space"), None)
        };
        assert!(validate(&bad, "pools[0].tls", &mut errs).is_none());
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            text[0].starts_with("pools[0].tls.sni: \"has space\""),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("pools[0].tls.ca_path: /nonexistent/ca.pem cannot be read"),
            "{text:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let mut errs = Vec::new();
        let junk = junk.display().to_string();
        validate(
            &OriginTlsConfig {
                ca_path: Some(junk),
                ..OriginTlsConfig::default()
            },
            "p",
            &mut errs,
        );
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].to_string().contains("holds no PEM certificate"),
            "{errs:?}"
        );
    }
}
