//! The ACME background service: one task per listener with `tls.acme`, each a loop of
//! adopt (what the store holds) → decide (due? locked by another instance? backing off?) →
//! order → store and serve. The old certificate is served until a new one is in the slot.
//!
//! With a shared store (Redis) every instance polls the store every [`SHARED_POLL`], so a
//! certificate ordered by one is served by all within seconds; the order lock makes exactly one
//! of them order.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;

use super::order::{self, Answering, Proof};
use super::{AcmeError, Report};
use crate::clock::unix_now;
use crate::config::{AcmeConfig, CertKey};
use crate::instance::Instance;
use crate::state::certs::CertStore;
use crate::telemetry::certs as metrics;
use crate::tls::cert_info::CertInfo;
use crate::tls::slot::CertSlot;

/// How often an instance sharing its store looks for a certificate another one ordered.
pub const SHARED_POLL: Duration = Duration::from_secs(2);
/// The longest sleep with nothing due, so a clock change is noticed.
const IDLE_MAX: u64 = 3600;
/// How long the order lock is held at most (an instance that died mid-order frees it then).
const LOCK_TTL: Duration = Duration::from_secs(300);
/// The first retry after a failed order, doubled per failure up to [`RETRY_MAX`].
const RETRY_FIRST: u64 = 30;
const RETRY_MAX: u64 = 3600;

/// Seconds to wait after the `failures`-th failure in a row.
pub fn backoff(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// Runs every ACME listener's loop for the life of the process.
pub struct AcmeService {
    pub live: Arc<Instance>,
}

#[async_trait]
impl BackgroundService for AcmeService {
    /// Serves what the store holds before it says it is ready: the listeners wait for that, so
    /// that no handshake after a restart or an upgrade finds an ACME listener empty.
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let mut managers = Vec::new();
        for l in &self.live.started_with().listeners {
            let Some(cfg) = l.tls.as_ref().and_then(|t| t.acme.clone()) else {
                continue;
            };
            let Some(slot) = self.live.cert_slots.slot(&l.address) else {
                continue;
            };
            let mut manager = Manager::new(&self.live, l.address.clone(), cfg, slot);
            manager.adopt_stored().await;
            managers.push(manager);
        }
        ready.notify_ready();
        let mut tasks = tokio::task::JoinSet::new();
        for manager in managers {
            tasks.spawn(manager.run());
        }
        tokio::select! {
            _ = shutdown.changed() => {}
            Some(Err(e)) = tasks.join_next(), if !tasks.is_empty() => {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
}

/// One listener's certificate: where it is kept, how names are proven, what is served.
struct Manager {
    live: Arc<Instance>,
    listener: String,
    cfg: AcmeConfig,
    slot: Arc<CertSlot>,
    store: Arc<dyn CertStore>,
    proof: Proof,
    /// `cert-<first domain>.pem`: the key and chain as one PEM text.
    cert_key: String,
    report: Report,
    account: Option<instant_acme::Account>,
    /// The directory said it no longer knows the stored account: create a new one.
    new_account: bool,
}

impl Manager {
    fn new(live: &Arc<Instance>, listener: String, cfg: AcmeConfig, slot: Arc<CertSlot>) -> Self {
        // HTTP-01 needs a plain listener that port 80 reaches; without one the TLS listener
        // proves the names itself.
        let plain = live
            .started_with()
            .listeners
            .iter()
            .any(|l| l.tls.is_none());
        let proof = if plain {
            Proof::Http01
        } else {
            Proof::TlsAlpn01
        };
        let report = Report {
            domains: cfg.domains.clone(),
            directory: cfg.directory.clone(),
            challenge: proof.as_str(),
            state: "starting",
            ..Report::default()
        };
        Manager {
            store: live.state.cert_store(&cfg.storage),
            cert_key: format!("cert-{}.pem", cfg.domains[0].to_ascii_lowercase()),
            live: live.clone(),
            listener,
            cfg,
            slot,
            proof,
            report,
            account: None,
            new_account: false,
        }
    }

    async fn run(mut self) {
        log::info!(
            "acme: listener {} gets {} from {} ({}, kept in {})",
            self.listener,
            self.cfg.domains.join(", "),
            self.cfg.directory,
            self.proof.as_str(),
            self.store.describe()
        );
        let mut retry_at = 0;
        loop {
            self.adopt_stored().await;
            let now = unix_now();
            let wait = match self.due(now) {
                Some(renew_at) => renew_at.saturating_sub(now),
                None if retry_at > now => retry_at - now,
                None => match self.try_order().await {
                    Attempt::Done => 0,
                    Attempt::Locked => 0,
                    Attempt::Failed(after) => {
                        retry_at = unix_now() + after;
                        after
                    }
                },
            };
            self.publish();
            let wait = match self.store.shared() {
                true => SHARED_POLL.min(Duration::from_secs(wait.max(1))),
                false => Duration::from_secs(wait.clamp(1, IDLE_MAX)),
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// `Some(renewal time)` while the served certificate is good; `None` when one is due.
    fn due(&mut self, now: u64) -> Option<u64> {
        let info = self.slot.issued().map(|c| CertInfo::of(&c))?;
        if !info.covers(&self.cfg.domains) {
            return None;
        }
        let renew_at = info.renew_at();
        self.report.renew_at = Some(renew_at);
        (now < renew_at).then_some(renew_at)
    }

    /// Serves the store's certificate when it is another than the one served (a restart, or
    /// an order by another instance).
    async fn adopt_stored(&mut self) {
        let stored = match self.store.get(&self.cert_key).await {
            Ok(Some(pem)) => pem,
            Ok(None) => return,
            Err(e) => {
                log::warn!(
                    "acme: {}: cannot read the stored certificate: {e}",
                    self.listener
                );
                return;
            }
        };
        let cert = match CertKey::from_pem(&stored) {
            Ok(c) => c,
            Err(e) => {
                log::warn!(
                    "acme: {}: the stored certificate is unusable ({e}); ordering anew",
                    self.listener
                );
                return;
            }
        };
        let served = self.slot.issued();
        let same = served.as_ref().is_some_and(|s| same_leaf(s, &cert));
        let fresher = served
            .as_ref()
            .is_none_or(|s| CertInfo::of(&cert).not_after >= CertInfo::of(s).not_after);
        if !same && fresher {
            self.install(cert, "stored");
        }
    }

    /// Serves `cert` from the next handshake on.
    fn install(&mut self, cert: CertKey, whence: &str) {
        let info = CertInfo::of(&cert);
        log::info!(
            "acme: listener {} serves the {whence} certificate for {} from {} (expires at {}, renewal at {})",
            self.listener,
            info.names.join(", "),
            info.issuer,
            info.not_after,
            info.renew_at()
        );
        self.slot.store_issued(Arc::new(cert));
        self.report.state = "valid";
        self.report.renew_at = Some(info.renew_at());
    }

    /// Takes the lock and orders; the outcome is logged and counted here.
    async fn try_order(&mut self) -> Attempt {
        let holder = self.live.id.token().to_string();
        match self.store.lock(&self.cert_key, &holder, LOCK_TTL).await {
            Ok(true) => {}
            Ok(false) => {
                if self.report.state != "waiting" {
                    log::info!(
                        "acme: {}: another instance is ordering; waiting for its certificate",
                        self.listener
                    );
                }
                self.report.state = "waiting";
                return Attempt::Locked;
            }
            Err(e) => return self.failed(e.into()),
        }
        // Another instance may have stored one between this loop's read and the lock.
        self.adopt_stored().await;
        if self.due(unix_now()).is_some() {
            self.store.unlock(&self.cert_key, &holder).await;
            return Attempt::Done;
        }
        self.report.state = "ordering";
        self.publish();
        let result = self.order().await;
        self.store.unlock(&self.cert_key, &holder).await;
        match result {
            Ok(cert) => {
                metrics::order_succeeded();
                self.report.failures = 0;
                self.report.last_error = None;
                self.report.retry_at = None;
                self.install(cert, "new");
                Attempt::Done
            }
            Err(e) => self.failed(e),
        }
    }

    async fn order(&mut self) -> Result<CertKey, AcmeError> {
        let account = match &self.account {
            Some(a) => a.clone(),
            None => {
                let a = order::account(&self.cfg, self.store.as_ref(), self.new_account).await?;
                self.account = Some(a.clone());
                self.new_account = false;
                a
            }
        };
        let how = Answering {
            proof: self.proof,
            answers: &self.live.acme.answers,
            slot: &self.slot,
            store: self.store.as_ref(),
        };
        let pem = order::order(&account, &self.cfg.domains, &how).await?;
        let cert = CertKey::from_pem(pem.as_bytes()).map_err(AcmeError::Key)?;
        // A certificate that cannot be stored is still served: ordering it again would count
        // against the directory's rate limits. A restart orders anew.
        if let Err(e) = self.store.put(&self.cert_key, pem.as_bytes()).await {
            log::error!(
                "acme: listener {}: the new certificate is served but cannot be stored: {e}",
                self.listener
            );
        }
        Ok(cert)
    }

    fn failed(&mut self, e: AcmeError) -> Attempt {
        metrics::order_failed();
        if e.lost_account() {
            self.account = None;
            self.new_account = true;
        }
        self.report.failures += 1;
        // A forgotten account is not the directory's trouble: try again at once with a new one.
        let after = match e.lost_account() && self.report.failures == 1 {
            true => 1,
            false => backoff(self.report.failures),
        };
        let keeping = match self.slot.issued() {
            Some(_) => "keeping the current certificate",
            None => "no certificate yet",
        };
        log::warn!(
            "acme: listener {}: order for {} failed ({} in a row): {e}; {keeping}; next try in {after} s",
            self.listener,
            self.cfg.domains.join(", "),
            self.report.failures
        );
        self.report.state = "failing";
        self.report.last_error = Some(e.to_string());
        self.report.retry_at = Some(unix_now() + after);
        Attempt::Failed(after)
    }

    fn publish(&self) {
        self.live.acme.report(&self.listener, self.report.clone());
    }
}

enum Attempt {
    Done,
    Locked,
    /// Failed; try again after this many seconds.
    Failed(u64),
}

fn same_leaf(a: &CertKey, b: &CertKey) -> bool {
    match (a.chain[0].to_der(), b.chain[0].to_der()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn retries_back_off_from_thirty_seconds_to_an_hour() {
        assert_eq!(backoff(1), 30);
        assert_eq!(backoff(2), 60);
        assert_eq!(backoff(3), 120);
        assert_eq!(backoff(8), 3600);
        assert_eq!(backoff(u32::MAX), 3600);
    }
}
