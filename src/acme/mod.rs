//! Automatic certificates (SPEC §3.11): a TLS listener with `tls.acme` gets its certificate from
//! an ACME directory and renews it, with no other tool beside tether.
//!
//! - [`service`]: the background service, one task per ACME listener: it serves what the store
//!   holds, orders when the certificate is missing or two thirds of its lifetime have passed,
//!   retries with backoff keeping the old certificate, and swaps a new one into the listener's
//!   `CertSlot` (the next handshake serves it; no connection is touched).
//! - [`order`]: one order through instant-acme, with the challenge answers it needs.
//! - [`store`]: where accounts and certificates are kept: files, or Redis shared by every
//!   instance with a lock so that one orders.
//!
//! The answers themselves are served elsewhere: HTTP-01 by the proxy before routing
//! (`proxy::acme`), TLS-ALPN-01 by the listener's acceptor (`tls::acceptor`).

pub mod order;
pub mod service;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::{json, Value};

pub use service::AcmeService;

/// Why an order or a store operation failed; every variant is safe to log.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("the directory refused: {0}")]
    Refused(String),
    #[error("storage: {0}")]
    Store(String),
    #[error("key or CSR: {0}")]
    Key(String),
}

impl AcmeError {
    /// The directory no longer knows the account (deactivated, or a test directory restarted):
    /// the stored one is useless and a new one must be created.
    pub fn lost_account(&self) -> bool {
        matches!(self, AcmeError::Protocol(instant_acme::Error::Api(p))
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
    }
}

impl From<store::CertStoreError> for AcmeError {
    fn from(e: store::CertStoreError) -> Self {
        AcmeError::Store(e.0)
    }
}

/// HTTP-01 answers this instance is expecting a validation for: token → key authorization.
#[derive(Debug, Default)]
pub struct Answers(Mutex<HashMap<String, String>>);

impl Answers {
    /// Answers `token` with `key_authorization` until removed.
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.lock()
            .insert(token.to_string(), key_authorization.to_string());
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// The answer for `token`, if this instance expects its validation.
    pub fn get(&self, token: &str) -> Option<String> {
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the ACME service of one listener is doing, for `/status` and the page.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub domains: Vec<String>,
    pub directory: String,
    pub challenge: &'static str,
    /// `starting`, `ordering`, `valid`, `waiting` (another instance orders), `failing`.
    pub state: &'static str,
    pub renew_at: Option<u64>,
    pub failures: u32,
    pub last_error: Option<String>,
    /// When the next order is tried after a failure (unix seconds).
    pub retry_at: Option<u64>,
}

/// The instance's ACME side: the HTTP-01 answers and each listener's report.
#[derive(Debug, Default)]
pub struct Acme {
    /// Some listener has `tls.acme` (else no request is looked at as a validation).
    pub enabled: bool,
    pub answers: Answers,
    reports: Mutex<BTreeMap<String, Report>>,
}

impl Acme {
    /// The ACME side of an instance whose listeners are `listeners`.
    pub fn new(listeners: &[crate::config::Listener]) -> Acme {
        Acme {
            enabled: listeners
                .iter()
                .any(|l| l.tls.as_ref().is_some_and(|t| t.acme.is_some())),
            ..Acme::default()
        }
    }

    /// Replaces what listener `address` reports.
    pub fn report(&self, address: &str, r: Report) {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(address.to_string(), r);
    }

    /// Every ACME listener's report, as `/status` lists them.
    pub fn status_json(&self) -> Vec<Value> {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports
            .iter()
            .map(|(listener, r)| {
                json!({
                    "listener": listener,
                    "domains": r.domains,
                    "directory": r.directory,
                    "challenge": r.challenge,
                    "state": r.state,
                    "renew_at": r.renew_at,
                    "failures": r.failures,
                    "last_error": r.last_error,
                    "retry_at": r.retry_at,
                })
            })
            .collect()
    }
}
