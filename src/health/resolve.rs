//! The background re-resolver: an endpoint whose host name did not resolve at validation gets
//! no traffic (it counts as unhealthy); every [`EVERY`] this service looks its name up again, off
//! the request path and off the reactor, and attaches the address once it resolves. The endpoint
//! is then eligible, and its monitor (if any) decides from there.
//!
//! A name that resolves to one of tether's own listeners is not attached (SPEC §3.7): the
//! endpoint stays out of rotation, `/status` shows why as its health reason, and the name is
//! looked up again like an unresolved one, so it is used once DNS points elsewhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::balancer::{Endpoint, Snapshot};
use crate::config::{lookup_all, OwnAddr, OwnAddrs, LOOKUP_BUDGET};
use crate::instance::Instance;

/// How often unresolved endpoint names are looked up again.
pub const EVERY: Duration = Duration::from_secs(30);

/// Looks up the unresolved endpoint names of the live snapshot every [`EVERY`] until shutdown.
pub struct Resolver {
    pub live: Arc<Instance>,
}

/// The `address` of every endpoint of `snap` that has no socket address yet.
pub fn unresolved(snap: &Snapshot) -> Vec<String> {
    let all = snap.pools.iter().flat_map(|p| &p.endpoints);
    all.filter(|e| e.addr.get().is_none())
        .map(|e| e.addr.as_str().to_string())
        .collect()
}

/// Attaches each resolved name in `found` (address as written → lookup result) to the endpoints
/// of `snap` that name it and are still unresolved, unless the address is one of `own`; logs
/// each endpoint that gains an address, once. Returns how many did.
pub fn attach(
    snap: &Snapshot,
    found: &[(String, Result<SocketAddr, String>)],
    own: &OwnAddrs,
) -> usize {
    let mut attached = 0;
    for e in snap.pools.iter().flat_map(|p| &p.endpoints) {
        let hit = found.iter().find(|(name, _)| name == e.addr.as_str());
        if let Some((name, Ok(addr))) = hit {
            if let Some(ours) = own.reached_by(*addr) {
                keep_out(e, name, *addr, ours);
            } else if e.attach(*addr) {
                attached += 1;
                log::info!(
                    "{}: {name} now resolves to {addr}; the endpoint is eligible again",
                    e.label
                );
            }
        }
    }
    attached
}

/// Leaves `e` unresolved because `name` now resolves to `addr`, tether's own `ours`; logs it
/// the first time (or when the address changes), not every lookup round.
fn keep_out(e: &Endpoint, name: &str, addr: SocketAddr, ours: OwnAddr) {
    let why = format!(
        "not used: {name} resolves to {addr}, which is {ours}; tether would send its requests to itself in a loop"
    );
    if e.state.set_reason(&why) {
        log::warn!("{}: {why}", e.label);
    }
}

#[async_trait]
impl BackgroundService for Resolver {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.changed() => return,
            }
            let snap = self.live.snapshot();
            let mut names = unresolved(&snap);
            if names.is_empty() {
                continue;
            }
            names.sort();
            names.dedup();
            let lookup = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let found = lookup_all(&refs, LOOKUP_BUDGET);
                names.into_iter().zip(found).collect::<Vec<_>>()
            });
            match lookup.await {
                Ok(found) => {
                    for (name, result) in &found {
                        if let Err(why) = result {
                            log::debug!("endpoint address {name:?} {why}");
                        }
                    }
                    attach(&snap, &found, &self.live.own);
                }
                Err(e) => log::warn!("endpoint name lookup failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::RuntimeState;
    use crate::config::Config;

    const YAML: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
monitors: [{ id: m, type: http }]
pools:
  - id: p
    monitor: m
    endpoints:
      - { name: good, address: "127.0.0.1:9001" }
      - { name: later, address: "app-1.invalid:80" }
load_balancers:
  - { name: "*", default_pools: [p] }
"#;

    #[test]
    fn a_name_that_resolves_later_makes_its_endpoint_eligible() {
        let runtime = RuntimeState::default();
        let valid = Config::from_yaml(YAML, "test").unwrap();
        let names: Vec<_> = valid
            .warnings
            .iter()
            .filter(|w| w.contains(".address: "))
            .collect();
        assert_eq!(names.len(), 1, "{:?}", valid.warnings);
        assert!(names[0].starts_with("pools[0].endpoints[1].address: "));
        let snap = Snapshot::build(valid, &runtime, 1_700_000_000);
        let later = &snap.pools[0].endpoints[1];
        assert!(!later.healthy() && !later.takes_new());
        assert!(later.origin.peer().is_none(), "no peer without an address");
        assert!(snap.pools[0].endpoints[0].takes_new());
        assert_eq!(unresolved(&snap), ["app-1.invalid:80"]);

        let mut tracked = std::collections::HashMap::new();
        super::super::sync(&snap, &mut tracked, tokio::time::Instant::now());
        assert_eq!(tracked.len(), 1, "an unresolved name has nothing to check");

        let failed = [("app-1.invalid:80".to_string(), Err("no".to_string()))];
        assert_eq!(attach(&snap, &failed, &OwnAddrs::default()), 0);
        assert!(!later.healthy());

        let addr: SocketAddr = "127.0.0.2:80".parse().unwrap();
        let found = [("app-1.invalid:80".to_string(), Ok(addr))];
        assert_eq!(attach(&snap, &found, &OwnAddrs::default()), 1);
        assert!(later.takes_new());
        assert_eq!(later.addr.get(), Some(addr));
        assert!(later.origin.peer().is_some());
        assert!(unresolved(&snap).is_empty());
        super::super::sync(&snap, &mut tracked, tokio::time::Instant::now());
        assert!(tracked.contains_key(&later.id), "checked once it resolves");
        // Attached once: a second round changes nothing and logs nothing.
        assert_eq!(attach(&snap, &found, &OwnAddrs::default()), 0);
    }

    #[test]
    fn a_name_that_resolves_to_tether_itself_stays_out_of_rotation() {
        let yaml = r#"
listeners: [{ address: "127.0.0.1:18090" }]
pools:
  - id: q
    endpoints:
      - { name: good, address: "127.0.0.1:9001" }
      - { name: looped, address: "app-2.invalid:18090" }
load_balancers:
  - { name: "*", default_pools: [q] }
"#;
        let runtime = RuntimeState::default();
        let snap = Snapshot::build(Config::from_yaml(yaml, "test").unwrap(), &runtime, 0);
        let own = OwnAddrs::of(&snap.config);
        let looped = &snap.pools[0].endpoints[1];
        let ours: SocketAddr = "127.0.0.1:18090".parse().unwrap();
        let found = [("app-2.invalid:18090".to_string(), Ok(ours))];
        assert_eq!(attach(&snap, &found, &own), 0);
        assert!(!looped.takes_new() && looped.origin.peer().is_none());
        let why = looped.state.reason().unwrap();
        assert_eq!(why, "not used: app-2.invalid:18090 resolves to 127.0.0.1:18090, which is tether's own listener 127.0.0.1:18090; tether would send its requests to itself in a loop");
        // Looked up again each round; the unmonitored pool's sync leaves the reason alone.
        assert_eq!(unresolved(&snap), ["app-2.invalid:18090"]);
        super::super::sync(&snap, &mut Default::default(), tokio::time::Instant::now());
        assert_eq!(attach(&snap, &found, &own), 0);
        assert_eq!(looped.state.reason().as_deref(), Some(why.as_str()));
        // Once DNS points elsewhere, the endpoint is used.
        let elsewhere = [(
            "app-2.invalid:18090".to_string(),
            Ok("127.0.0.2:18090".parse().unwrap()),
        )];
        assert_eq!(attach(&snap, &elsewhere, &own), 1);
        assert!(looped.takes_new());
    }
}
