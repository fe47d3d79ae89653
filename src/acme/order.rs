//! One ACME order (RFC 8555) for one certificate: the account (restored from the store, or
//! created and stored), the order, one challenge per name answered by this instance (HTTP-01 on
//! the plain listeners, or TLS-ALPN-01 on the TLS listener itself), the CSR, the certificate.
//!
//! The protocol (JWS signing, nonces, polling) is instant-acme's; the CSR and the TLS-ALPN-01
//! certificate are rcgen's. Challenge answers are withdrawn when the order ends, whatever its
//! outcome.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};

use super::{AcmeError, Answers};
use crate::config::{AcmeConfig, CertKey};
use crate::state::certs::CertStore;
use crate::tls::slot::CertSlot;

/// How this instance proves control of the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A plain-HTTP listener answers `/.well-known/acme-challenge/<token>` (port 80 must reach it).
    Http01,
    /// The TLS listener answers ALPN `acme-tls/1` (port 443 must reach it).
    TlsAlpn01,
}

impl Proof {
    fn challenge_type(self) -> ChallengeType {
        match self {
            Proof::Http01 => ChallengeType::Http01,
            Proof::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Http01 => "http-01",
            Proof::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// How long the directory has to validate the challenges, and then to issue.
const VALIDATION: Duration = Duration::from_secs(90);
/// How long an HTTP-01 answer stays in a shared store (an order that died leaves none behind).
const ANSWER_TTL: Duration = Duration::from_secs(600);

/// The store key of the account for `directory` (one account per directory).
pub fn account_key(directory: &str) -> String {
    format!(
        "account-{:016x}.json",
        xxhash_rust::xxh3::xxh3_64(directory.as_bytes())
    )
}

/// The account at `cfg.directory`: restored from the store (unless `fresh`), or created there
/// and stored.
pub async fn account(
    cfg: &AcmeConfig,
    store: &dyn CertStore,
    fresh: bool,
) -> Result<Account, AcmeError> {
    let key = account_key(&cfg.directory);
    let builder = || match cfg.ca_path.is_empty() {
        true => Account::builder(),
        false => Account::builder_with_root(&cfg.ca_path),
    };
    let saved = match fresh {
        true => None,
        false => store.get(&key).await?,
    };
    if let Some(saved) = saved {
        let creds: AccountCredentials = serde_json::from_slice(&saved)
            .map_err(|e| AcmeError::Store(format!("account {key} cannot be read: {e}")))?;
        return Ok(builder()?.from_credentials(creds).await?);
    }
    let contact = format!("mailto:{}", cfg.email.trim_start_matches("mailto:"));
    let contacts: Vec<&str> = match cfg.email.is_empty() {
        true => Vec::new(),
        false => vec![contact.as_str()],
    };
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, creds) = builder()?.create(&new, cfg.directory.clone(), None).await?;
    let saved = serde_json::to_vec(&creds).map_err(|e| AcmeError::Store(e.to_string()))?;
    store.put(&key, &saved).await?;
    log::info!(
        "acme: created account {} at {} (key stored in {})",
        account.id(),
        cfg.directory,
        store.describe()
    );
    Ok(account)
}

/// Where this order's challenge answers go.
pub struct Answering<'a> {
    pub proof: Proof,
    pub answers: &'a Answers,
    pub slot: &'a CertSlot,
    pub store: &'a dyn CertStore,
}

/// Orders one certificate for `domains`; returns its key and chain as one PEM text.
pub async fn order(
    account: &Account,
    domains: &[String],
    how: &Answering<'_>,
) -> Result<String, AcmeError> {
    let ids: Vec<Identifier> = domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    log::info!(
        "acme: order {} placed for {}",
        order.url(),
        domains.join(", ")
    );
    let mut armed = Armed {
        answers: how.answers,
        slot: how.slot,
        tokens: Vec::new(),
        names: Vec::new(),
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(AcmeError::Refused(format!("authorization is {other:?}"))),
        }
        let mut challenge = authz.challenge(how.proof.challenge_type()).ok_or_else(|| {
            AcmeError::Refused(format!("no {} challenge offered", how.proof.as_str()))
        })?;
        let name = challenge.identifier().to_string();
        let auth = challenge.key_authorization();
        match how.proof {
            Proof::Http01 => {
                let token = challenge.token.clone();
                how.answers.insert(&token, auth.as_str());
                how.store
                    .put_challenge(&token, auth.as_str(), ANSWER_TTL)
                    .await;
                armed.tokens.push(token);
            }
            Proof::TlsAlpn01 => {
                let cert = alpn_certificate(&name, auth.digest().as_ref())?;
                how.slot.add_challenge(&name, Arc::new(cert));
                armed.names.push(name.clone());
            }
        }
        challenge.set_ready().await?;
        log::info!("acme: {} challenge for {name} ready", how.proof.as_str());
    }
    let retry = RetryPolicy::new().timeout(VALIDATION);
    let status = order.poll_ready(&retry).await?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Refused(format!(
            "order is {status:?}: {}",
            why_invalid(&mut order).await
        )));
    }
    drop(armed);
    let key = KeyPair::generate().map_err(|e| AcmeError::Key(e.to_string()))?;
    let mut params =
        CertificateParams::new(domains.to_vec()).map_err(|e| AcmeError::Key(e.to_string()))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&retry).await?;
    Ok(format!("{}{chain}", key.serialize_pem()))
}

/// The validation errors the directory gave, as one line.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut why = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for c in &authz.challenges {
            if let Some(p) = &c.error {
                why.push(p.detail.clone().unwrap_or_else(|| format!("{p:?}")));
            }
        }
    }
    match why.is_empty() {
        true => "no reason given".to_string(),
        false => why.join("; "),
    }
}

/// The TLS-ALPN-01 certificate for `name` (RFC 8737): self-signed, the name as its only SAN,
/// the key authorization's SHA-256 in the critical `acmeIdentifier` extension.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<CertKey, AcmeError> {
    let key = KeyPair::generate().map_err(|e| AcmeError::Key(e.to_string()))?;
    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    let cert = params
        .self_signed(&key)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    CertKey::from_pem(format!("{}{}", key.serialize_pem(), cert.pem()).as_bytes())
        .map_err(AcmeError::Key)
}

/// The challenge answers of one order, withdrawn when it ends however it ends.
struct Armed<'a> {
    answers: &'a Answers,
    slot: &'a CertSlot,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.answers.remove(t);
        }
        for n in &self.names {
            self.slot.remove_challenge(n);
        }
    }
}
