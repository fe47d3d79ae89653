//! The resolver (SPEC §3.10): endpoints written as `host:port` follow DNS while tether runs.
//! A background service looks each name up again when its record's TTL runs out, at least
//! every `resolver.interval_seconds` (never more often than once a second), and stores what it
//! found in the endpoints' runtime state (`balancer::AddressCell`), so an address change takes
//! effect without a reload and moves no session. Lookups run here, never on the request path,
//! and never under the reload lock; a reload only changes which names there are.
//!
//! `lookup` is the DNS client (hickory-resolver) and `apply` what an answer does to endpoints.

pub mod apply;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::time::Instant;

use crate::config::lookup::{self, Dns};
use crate::instance::Instance;

/// How often the service wakes to see which names are due (and which a reload added).
const TICK: Duration = Duration::from_secs(1);
/// The shortest wait before a name is asked about again, whatever its TTL says.
const MIN_WAIT: Duration = Duration::from_secs(1);
/// The longest wait before a name that failed is asked about again.
const RETRY: Duration = Duration::from_secs(5);
/// The longest one round of lookups may take, all names together: each is bounded by
/// `lookup::LOOKUP_TIMEOUT`, so this is only a backstop.
const ROUND_BUDGET: Duration = Duration::from_secs(10);

/// Keeps every endpoint host name of the live snapshot resolved until shutdown.
pub struct Resolver {
    pub live: Arc<Instance>,
}

/// When a name is asked about next, and whether its last lookup failed (an outage is logged
/// once, when it starts, and once when it ends).
#[derive(Debug, Clone, Copy)]
struct Due {
    next: Instant,
    failing: bool,
}

/// The wait before the next lookup of a name whose answer holds until `valid_until`.
pub fn next_wait(valid_until: std::time::Instant, interval: Duration) -> Duration {
    let ttl = valid_until.saturating_duration_since(std::time::Instant::now());
    ttl.clamp(MIN_WAIT, interval.max(MIN_WAIT))
}

#[async_trait]
impl BackgroundService for Resolver {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut dns: Option<Dns> = None;
        let mut unusable: Option<String> = None;
        let mut due: HashMap<String, Due> = HashMap::new();
        loop {
            let snap = self.live.snapshot();
            let servers = snap.config.resolver.nameserver_addrs();
            if dns.as_ref().is_none_or(|d| d.servers() != servers) {
                dns = client(&servers, &mut unusable);
            }
            if let Some(dns) = &dns {
                let names = apply::names(&snap);
                due.retain(|n, _| names.contains(n));
                let now = Instant::now();
                let ready: Vec<String> = names
                    .into_iter()
                    .filter(|n| due.get(n).is_none_or(|d| d.next <= now))
                    .collect();
                if !ready.is_empty() {
                    self.round(dns, ready, &mut due).await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The DNS client for `servers`, or `None` while the system's configuration cannot be read
/// (the next round tries again); `unusable` remembers why, so the warning is logged once.
fn client(servers: &[SocketAddr], unusable: &mut Option<String>) -> Option<Dns> {
    match Dns::new(servers) {
        Ok(dns) => {
            if unusable.take().is_some() {
                log::info!("endpoint names can be looked up again");
            }
            Some(dns)
        }
        Err(why) => {
            if unusable.as_deref() != Some(why.as_str()) {
                log::warn!("endpoint names cannot be looked up (last addresses kept): {why}");
            }
            *unusable = Some(why);
            None
        }
    }
}

impl Resolver {
    /// Looks every name of `ready` up at once (bounded by [`ROUND_BUDGET`]) and applies each
    /// answer to the snapshot live when it arrives, so a reload meanwhile is respected.
    async fn round(&self, dns: &Dns, ready: Vec<String>, due: &mut HashMap<String, Due>) {
        let mut set = tokio::task::JoinSet::new();
        for written in ready {
            let dns = dns.clone();
            set.spawn(async move {
                let found = match lookup::host_port(&written) {
                    Some((host, port)) => dns.lookup(host).await.map(|a| (a, port)),
                    None => Err("is not host:port".to_string()),
                };
                (written, found)
            });
        }
        let deadline = Instant::now() + ROUND_BUDGET;
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, set.join_next()).await {
            let Ok((written, found)) = joined else {
                continue;
            };
            self.apply(&written, found, due);
        }
    }

    /// What one lookup of `written` does: addresses stored or kept, and its next turn.
    fn apply(
        &self,
        written: &str,
        found: Result<(lookup::Answer, u16), String>,
        due: &mut HashMap<String, Due>,
    ) {
        let snap = self.live.snapshot();
        let interval = snap.config.resolver.interval();
        let was = due.get(written).copied();
        crate::telemetry::metrics::record_dns_lookup(found.is_ok());
        let next = match found {
            Ok((answer, port)) => {
                let addrs: Vec<SocketAddr> = answer
                    .ips
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port))
                    .collect();
                if was.is_some_and(|d| d.failing) {
                    log::info!("{written} resolves again");
                }
                apply::resolved(
                    &snap,
                    written,
                    &addrs,
                    &self.live.own,
                    crate::clock::unix_now(),
                );
                Due {
                    next: Instant::now() + next_wait(answer.valid_until, interval),
                    failing: false,
                }
            }
            Err(why) => {
                let first = !was.is_some_and(|d| d.failing);
                apply::failed(&snap, written, &why, first);
                Due {
                    next: Instant::now() + interval.min(RETRY),
                    failing: true,
                }
            }
        };
        due.insert(written.to_string(), next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_lookup_follows_the_ttl_within_one_second_and_the_interval() {
        let now = std::time::Instant::now();
        let interval = Duration::from_secs(30);
        let soon = next_wait(now + Duration::from_secs(5), interval);
        assert!(soon <= Duration::from_secs(5) && soon > Duration::from_secs(4));
        assert_eq!(
            next_wait(now, interval),
            MIN_WAIT,
            "an expired TTL: never under 1 s"
        );
        assert_eq!(
            next_wait(now + Duration::from_secs(3600), interval),
            interval
        );
        assert_eq!(
            next_wait(now + Duration::from_secs(60), Duration::ZERO),
            MIN_WAIT
        );
    }
}
