//! A TLS listener's certificates (SPEC §2 `listeners[].tls`, §3.8): one `{cert_path, key_path}`
//! or a list of them, the first being the default, and in the mapping form `acme:` beside or
//! instead of the files (§3.11); and loading each pair, so that a file that does not load is a
//! config error (at start, `--test` and reload) naming its YAML path.

use pingora::tls::pkey::{PKey, Private};
use pingora::tls::x509::X509;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::acme::AcmeConfig;
use super::error::ConfigError;

/// PEM certificate chain and private key of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert_path: String,
    pub key_path: String,
}

/// The mapping form of `listeners[].tls`: a certificate pair, `acme:`, or both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsMap {
    cert_path: Option<String>,
    key_path: Option<String>,
    acme: Option<AcmeConfig>,
}

/// `listeners[].tls`: the certificates a listener serves, chosen by SNI; after validation
/// never empty unless `acme` orders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    certs: Vec<Tls>,
    /// Written as a list (so errors say `tls[1].cert_path`) rather than one mapping.
    listed: bool,
    /// Certificates ordered at run time (SPEC §3.11); the files serve until the first is issued.
    pub acme: Option<AcmeConfig>,
}

impl ListenerTls {
    /// Every certificate, the default first.
    pub fn certs(&self) -> &[Tls] {
        &self.certs
    }

    /// The YAML path of certificate `j`'s `field` under `base` (`listeners[0].tls`).
    pub fn path(&self, base: &str, j: usize, field: &str) -> String {
        if self.listed {
            format!("{base}[{j}].{field}")
        } else {
            format!("{base}.{field}")
        }
    }
}

impl<'de> Deserialize<'de> for ListenerTls {
    /// A mapping or a sequence of them, read through the outer deserializer so that errors
    /// keep their path (`listeners[0].tls[1].key_path`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = ListenerTls;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("{ cert_path, key_path, acme } or a list of { cert_path, key_path }")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ListenerTls, A::Error> {
                use serde::de::Error;
                let m = TlsMap::deserialize(MapAccessDeserializer::new(map))?;
                let certs = match (m.cert_path, m.key_path, &m.acme) {
                    (Some(cert_path), Some(key_path), _) => vec![Tls {
                        cert_path,
                        key_path,
                    }],
                    (None, None, Some(_)) => Vec::new(),
                    (Some(_), None, _) => return Err(A::Error::missing_field("key_path")),
                    (None, _, _) => return Err(A::Error::missing_field("cert_path")),
                };
                Ok(ListenerTls {
                    certs,
                    listed: false,
                    acme: m.acme,
                })
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ListenerTls, A::Error> {
                let certs = Vec::<Tls>::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(ListenerTls {
                    certs,
                    listed: true,
                    acme: None,
                })
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

/// A certificate chain (leaf first), its private key, and the names it serves.
#[derive(Clone)]
pub struct CertKey {
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// DNS names from the leaf's SAN (its CN when it has none), lower-case; `*.` wildcards kept.
    pub names: Vec<String>,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Which file of a pair failed to load, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Cert,
    Key,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Cert => "cert_path",
            Field::Key => "key_path",
        }
    }
}

impl CertKey {
    /// Reads and checks one pair: a PEM chain, a PEM key, and the key must be the leaf's.
    /// Every problem is returned, the file it concerns first.
    pub fn load(tls: &Tls) -> Result<CertKey, Vec<(Field, String)>> {
        let chain = std::fs::read(&tls.cert_path)
            .map_err(|e| format!("cannot be read: {e}"))
            .and_then(|pem| {
                X509::stack_from_pem(&pem)
                    .map_err(|e| format!("is not a PEM certificate chain: {e}"))
            })
            .and_then(|chain| match chain.is_empty() {
                true => Err("holds no PEM certificate".to_string()),
                false => Ok(chain),
            });
        let key = std::fs::read(&tls.key_path)
            .map_err(|e| format!("cannot be read: {e}"))
            .and_then(|pem| {
                PKey::private_key_from_pem(&pem)
                    .map_err(|e| format!("is not a PEM private key: {e}"))
            });
        let (chain, key) = match (chain, key) {
            (Ok(chain), Ok(key)) => (chain, key),
            (chain, key) => {
                let mut errs = Vec::new();
                if let Err(e) = chain {
                    errs.push((Field::Cert, e));
                }
                if let Err(e) = key {
                    errs.push((Field::Key, e));
                }
                return Err(errs);
            }
        };
        let leaf = &chain[0];
        if !leaf.public_key().is_ok_and(|public| public.public_eq(&key)) {
            let reason = format!("is not the key of the certificate {}", tls.cert_path);
            return Err(vec![(Field::Key, reason)]);
        }
        let names = names_of(leaf);
        Ok(CertKey { chain, key, names })
    }

    /// A certificate from PEM text: `pem` holds the chain (leaf first) and its private key,
    /// in any order (the form the ACME service stores); the key must be the leaf's.
    pub fn from_pem(pem: &[u8]) -> Result<CertKey, String> {
        let chain = X509::stack_from_pem(pem).map_err(|e| format!("no PEM chain: {e}"))?;
        let key = PKey::private_key_from_pem(pem).map_err(|e| format!("no PEM key: {e}"))?;
        let Some(leaf) = chain.first() else {
            return Err("holds no PEM certificate".into());
        };
        if !leaf.public_key().is_ok_and(|public| public.public_eq(&key)) {
            return Err("the key is not the certificate's".into());
        }
        let names = names_of(leaf);
        Ok(CertKey { chain, key, names })
    }

    /// `field`'s file in `tls`.
    pub fn file(tls: &Tls, field: Field) -> &str {
        match field {
            Field::Cert => &tls.cert_path,
            Field::Key => &tls.key_path,
        }
    }
}

fn names_of(leaf: &X509) -> Vec<String> {
    let san: Vec<String> = leaf
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    if !san.is_empty() {
        return san;
    }
    leaf.subject_name()
        .entries_by_nid(pingora::tls::nid::Nid::COMMONNAME)
        .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase()))
        .collect()
}

/// Loads every certificate of listener `i`; `None` (with the errors in `e`) unless all load.
pub(super) fn load(tls: &ListenerTls, i: usize, e: &mut Vec<ConfigError>) -> Option<Vec<CertKey>> {
    let base = format!("listeners[{i}].tls");
    if let Some(acme) = &tls.acme {
        super::acme::validate(acme, &base, e);
    }
    if tls.certs.is_empty() && tls.acme.is_some() {
        return Some(Vec::new());
    }
    if tls.certs.is_empty() {
        e.push(ConfigError::schema(base, "needs at least one certificate"));
        return None;
    }
    let mut loaded = Vec::with_capacity(tls.certs.len());
    for (j, pair) in tls.certs.iter().enumerate() {
        match CertKey::load(pair) {
            Ok(c) => loaded.push(c),
            Err(problems) => {
                for (field, reason) in problems {
                    let path = tls.path(&base, j, field.name());
                    e.push(ConfigError::invalid(
                        path,
                        CertKey::file(pair, field),
                        reason,
                    ));
                }
            }
        }
    }
    (loaded.len() == tls.certs.len()).then_some(loaded)
}
