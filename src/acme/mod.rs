//! Automatic certificates (SPEC §3.11): a TLS listener with `tls.acme` gets its certificate from
//! an ACME directory and renews it, with no other tool beside tether.
//!
//! - [`service`]: the background service, one task per ACME listener: it serves what the store
//!   holds, orders when the certificate is missing or two thirds of its lifetime have passed,
//!   retries with backoff keeping the old certificate, and swaps a new one into the listener's
//!   `CertSlot` (the next handshake serves it; no connection is touched).
//! - [`order`]: one order through instant-acme, with the challenge answers it needs.
//!
//! Where accounts and certificates are kept (files, or Redis shared by every instance with a lock
//! so that one orders) is the state store's: `state::certs`. What the instance shows and answers
//! while orders run (HTTP-01 answers, each listener's report) is `state::acme`, owned by the
//! instance, which this service (above it) writes.
//!
//! The answers themselves are served elsewhere: HTTP-01 by the proxy before routing
//! (`proxy::acme`), TLS-ALPN-01 by the listener's acceptor (`tls::acceptor`).

pub mod order;
pub mod service;

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

impl From<crate::state::certs::CertStoreError> for AcmeError {
    fn from(e: crate::state::certs::CertStoreError) -> Self {
        AcmeError::Store(e.0)
    }
}

pub use crate::state::acme::{Acme, Answers, Report};
