//! `listeners[].tls.acme` (SPEC §2, §3.11): the names a TLS listener gets certificates for from
//! an ACME directory, and where they are kept. Checked here so that a name no ACME server
//! would issue, or a CA file that cannot be read, is a config error with its YAML path rather
//! than an order failing an hour later.

use serde::Deserialize;

use super::error::ConfigError;

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Certificates ordered and renewed from an ACME directory for one TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The names of the one certificate ordered (its SAN); the first names it in storage.
    pub domains: Vec<String>,
    /// The account's contact (`mailto:`); the directory's expiry notices go there.
    #[serde(default)]
    pub email: String,
    #[serde(default = "default_directory")]
    pub directory: String,
    /// An extra root (PEM) to trust the directory with instead of the system's; empty = none.
    #[serde(default)]
    pub ca_path: String,
    /// The account key and certificates with the embedded store (Redis holds them otherwise).
    #[serde(default = "default_storage")]
    pub storage: String,
}

fn default_directory() -> String {
    LETS_ENCRYPT.to_string()
}

fn default_storage() -> String {
    "/var/lib/tether/acme".to_string()
}

/// Checks `acme` of the listener whose `tls:` is at `base` (`listeners[0].tls`).
pub(super) fn validate(acme: &AcmeConfig, base: &str, e: &mut Vec<ConfigError>) {
    let base = format!("{base}.acme");
    if acme.domains.is_empty() {
        e.push(ConfigError::schema(
            format!("{base}.domains"),
            "needs at least one name",
        ));
    }
    for (i, d) in acme.domains.iter().enumerate() {
        let path = format!("{base}.domains[{i}]");
        if let Some(reason) = refused_name(d) {
            e.push(ConfigError::invalid(&path, d, reason));
        }
        if let Some(first) = acme.domains[..i]
            .iter()
            .position(|o| o.eq_ignore_ascii_case(d))
        {
            e.push(ConfigError::Duplicate {
                path,
                what: "domain",
                name: d.clone(),
                first: format!("{base}.domains[{first}]"),
            });
        }
    }
    if !acme.email.is_empty() && !plausible_email(&acme.email) {
        e.push(ConfigError::invalid(
            format!("{base}.email"),
            &acme.email,
            "is not an email address",
        ));
    }
    if !acme.directory.starts_with("https://") || acme.directory.len() <= "https://".len() {
        e.push(ConfigError::invalid(
            format!("{base}.directory"),
            &acme.directory,
            "is not an https:// URL (RFC 8555 directories are served over HTTPS)",
        ));
    }
    if !acme.ca_path.is_empty() {
        if let Err(reason) = super::origin_tls::read_ca_file(&acme.ca_path) {
            e.push(ConfigError::invalid(
                format!("{base}.ca_path"),
                &acme.ca_path,
                reason,
            ));
        }
    }
    if acme.storage.is_empty() {
        e.push(ConfigError::schema(
            format!("{base}.storage"),
            "must not be empty",
        ));
    }
}

/// Why an ACME server would not issue for `name` over HTTP-01 or TLS-ALPN-01, if it would not.
fn refused_name(name: &str) -> Option<&'static str> {
    if name.starts_with("*.") {
        return Some(
            "is a wildcard: only DNS-01 can prove one, and tether answers HTTP-01 and TLS-ALPN-01",
        );
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Some("is an IP address: tether orders certificates for DNS names");
    }
    if !super::is_dns_name(name) || !name.contains('.') {
        return Some("is not a fully qualified DNS name");
    }
    None
}

fn plausible_email(email: &str) -> bool {
    let email = email.strip_prefix("mailto:").unwrap_or(email);
    email.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty() && host.contains('.') && !email.contains(char::is_whitespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        let acme: AcmeConfig = serde_yaml::from_str(yaml).expect("parses");
        let mut e = Vec::new();
        validate(&acme, "listeners[1].tls", &mut e);
        e.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_to_lets_encrypt_production_and_var_lib() {
        let acme: AcmeConfig = serde_yaml::from_str("domains: [a.example.com]").expect("parses");
        assert_eq!(acme.directory, LETS_ENCRYPT);
        assert_eq!(acme.storage, "/var/lib/tether/acme");
        assert!(errors("domains: [a.example.com]").is_empty());
    }

    #[test]
    fn refuses_names_no_http_or_alpn_challenge_can_prove_with_their_path() {
        let e = errors(
            "domains: ['*.example.com', 10.0.0.1, localhost, a.example.com, A.example.com]\n\
             email: nobody\ndirectory: http://acme.test/dir\nstorage: ''",
        );
        let joined = e.join("\n");
        for want in [
            "listeners[1].tls.acme.domains[0]: *.example.com is a wildcard",
            "listeners[1].tls.acme.domains[1]: 10.0.0.1 is an IP address",
            "listeners[1].tls.acme.domains[2]: localhost is not a fully qualified",
            "listeners[1].tls.acme.domains[4]: duplicate domain",
            "listeners[1].tls.acme.email: nobody is not an email address",
            "listeners[1].tls.acme.directory: http://acme.test/dir is not an https://",
            "listeners[1].tls.acme.storage: must not be empty",
        ] {
            assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
        }
        assert_eq!(e.len(), 7, "{joined}");
    }
}
