//! Config values that must never be shown (SPEC §3.7): the cookie keys, the admin token, and
//! anything else that holds a credential (a Redis URL with a password belongs here too).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// What a secret prints as, wherever it is formatted.
pub const REDACTED: &str = "[redacted]";

/// A secret string from the config. `Debug` and `Display` print `[redacted]`, only
/// [`Secret::expose`] gives the value, and a YAML value of the wrong type is refused with an
/// error that does not quote it (serde's own message would: "invalid type: integer `…`").
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: for keying a MAC or comparing a token, never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The error for a secret written as something other than a string: names the kind, not the
/// value, since a token typed without quotes is still the token.
fn not_a_string<E: de::Error>(kind: &str) -> E {
    E::custom(format_args!(
        "invalid type: {kind}, expected a string (the value is not shown; quote it)"
    ))
}

/// Accepts a string; every scalar of another type is refused without being echoed.
macro_rules! refuse_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(not_a_string("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(not_a_string("a number"))
        }
        fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
            Err(not_a_string("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(not_a_string("a number"))
        }
        fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
            Err(not_a_string("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(not_a_string("a number"))
        }
        fn visit_char<E: de::Error>(self, _: char) -> Result<Self::Value, E> {
            Err(not_a_string("a character"))
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Err(not_a_string("bytes"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(E::custom("is empty"))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(E::custom("is empty"))
        }
    };
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    refuse_scalars!();
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `any`, not `string`: asked for a string, the YAML deserializer itself writes the
        // mismatching value into its error before a visitor could stop it.
        d.deserialize_any(SecretVisitor)
    }
}

/// `cookie_secret`: one key, or a list whose first entry signs and every entry verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secrets {
    One(Secret),
    Many(Vec<Secret>),
}

impl Secrets {
    /// The keys in order: the first signs, all verify.
    pub fn as_slice(&self) -> &[Secret] {
        match self {
            Secrets::One(one) => std::slice::from_ref(one),
            Secrets::Many(many) => many,
        }
    }

    /// The YAML path of the `i`th key: `cookie_secret` or `cookie_secret[i]`.
    pub fn path(&self, i: usize) -> String {
        match self {
            Secrets::One(_) => "cookie_secret".into(),
            Secrets::Many(_) => format!("cookie_secret[{i}]"),
        }
    }
}

struct SecretsVisitor;

impl<'de> Visitor<'de> for SecretsVisitor {
    type Value = Secrets;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret string or a list of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secrets, E> {
        Ok(Secrets::One(Secret::new(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Secrets, A::Error> {
        let mut all = Vec::new();
        while let Some(s) = seq.next_element::<Secret>()? {
            all.push(s);
        }
        Ok(Secrets::Many(all))
    }

    refuse_scalars!();
}

impl<'de> Deserialize<'de> for Secrets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        let many = Secrets::Many(vec![s.clone(), Secret::new("other-key")]);
        let shown = format!("{many:?} {:?}", Some(&s));
        assert!(
            !shown.contains("hunter2") && !shown.contains("other-key"),
            "{shown}"
        );
        assert_eq!(s.expose(), "hunter2-hunter2");
    }

    #[test]
    fn config_and_snapshot_debug_never_show_secrets() {
        let yaml = "admin:\n  token: \"the-admin-token-value\"\n\
                    cookie_secret: [\"first-cookie-key-value\", \"second-cookie-key-value\"]\n\
                    listeners:\n  - address: 127.0.0.1:1\n\
                    pools:\n  - id: web\n    endpoints:\n      - { name: a, address: \"127.0.0.1:2\" }\n\
                    load_balancers:\n  - name: x\n    default_pools: [web]\n";
        let config = crate::config::Config::from_yaml(yaml, "test").unwrap();
        let snap = crate::balancer::Snapshot::build(config.clone(), &Default::default(), 0);
        let shown = format!("{config:?} {snap:?} {:?}", config.admin);
        for secret in ["the-admin-token", "first-cookie-key", "second-cookie-key"] {
            assert!(!shown.contains(secret), "{secret} shown");
        }
        assert!(shown.contains(REDACTED));
    }

    #[test]
    fn a_mistyped_admin_section_is_refused_without_its_value() {
        let yaml = "admin: 987654321987\n";
        let err = crate::config::Config::from_yaml(yaml, "test")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("admin") && !err.contains("987654321987"),
            "{err}"
        );
        let err = crate::config::Config::from_yaml("admin: hunter2\n", "test")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_mistyped_secret_is_refused_without_its_value() {
        for yaml in [
            "987654321987",
            "-987654321987",
            "9876543.21987",
            "true",
            "[1, 987654321987]",
        ] {
            let err = serde_yaml::from_str::<Secrets>(yaml)
                .unwrap_err()
                .to_string();
            assert!(
                !err.contains("987654321987") && !err.contains("21987"),
                "{err}"
            );
            let err = serde_yaml::from_str::<Secret>(yaml)
                .unwrap_err()
                .to_string();
            assert!(
                !err.contains("987654321987") && !err.contains("21987"),
                "{err}"
            );
        }
        assert_eq!(
            serde_yaml::from_str::<Secrets>("[a, b]").unwrap(),
            Secrets::Many(vec![Secret::new("a"), Secret::new("b")])
        );
        assert_eq!(
            serde_yaml::from_str::<Secrets>("\"a\"").unwrap(),
            Secrets::One(Secret::new("a"))
        );
    }
}
