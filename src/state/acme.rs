//! The instance's ACME side while tether runs: the HTTP-01 answers this instance expects
//! validations for (read by the proxy before routing) and what each ACME listener's service is
//! doing (read by `/status` and the page). Owned by the instance; written by `acme::service`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::{json, Value};

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
