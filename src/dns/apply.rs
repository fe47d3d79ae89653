//! What a lookup result does to the endpoints that name it: new addresses are stored in each
//! endpoint's runtime cell (`balancer::AddressCell`), a failure keeps the last ones, and an
//! address that is tether's own listener is never used (SPEC §3.7).

use std::net::SocketAddr;

use crate::balancer::{Addresses, Endpoint, Snapshot};
use crate::config::{OwnAddr, OwnAddrs};

/// The `address` of every endpoint of `snap` written as a host name, each once, sorted.
pub fn names(snap: &Snapshot) -> Vec<String> {
    let all = snap.pools.iter().flat_map(|p| &p.endpoints);
    let mut names: Vec<String> = all
        .map(|e| e.addr.as_str())
        .filter(|a| a.parse::<SocketAddr>().is_err())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The endpoints of `snap` whose `address` is `written`.
fn named<'a>(snap: &'a Snapshot, written: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
    let all = snap.pools.iter().flat_map(|p| &p.endpoints);
    all.filter(move |e| e.addr.as_str() == written)
}

/// Stores what `written` resolved to, at unix second `now`, on the endpoints of `snap` that
/// name it, leaving out tether's own addresses (`own`); logs each endpoint whose addresses
/// changed. Returns how many endpoints changed.
pub fn resolved(
    snap: &Snapshot,
    written: &str,
    found: &[SocketAddr],
    own: &OwnAddrs,
    now: u64,
) -> usize {
    let ours: Vec<(SocketAddr, OwnAddr)> = found
        .iter()
        .filter_map(|a| Some((*a, own.reached_by(*a)?)))
        .collect();
    let list: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| !ours.iter().any(|(o, _)| o == a))
        .collect();
    let mut changed = 0;
    for e in named(snap, written) {
        if list.is_empty() {
            if let Some((addr, which)) = ours.first() {
                keep_out(e, written, *addr, *which);
            }
            continue;
        }
        let was_known = e.state.addresses.is_known();
        let new = Addresses {
            written: written.to_string(),
            list: list.clone(),
            resolved_at: Some(now),
        };
        if e.state.addresses.store(Some(new)) {
            changed += 1;
            let shown = Shown(&list);
            if was_known {
                log::info!("{}: {written} now resolves to {shown}", e.label);
            } else {
                log::info!(
                    "{}: {written} now resolves to {shown}; the endpoint is eligible again",
                    e.label
                );
            }
        }
    }
    changed
}

/// A lookup of `written` failed with `why`: endpoints that had addresses keep them (as
/// HAProxy's `init-addr last`); those that never had one stay out of rotation with `why` as
/// their reason, logged when it changes. `first` says whether this is the first failure of
/// an outage (the keep-last line is logged once per outage).
pub fn failed(snap: &Snapshot, written: &str, why: &str, first: bool) {
    for e in named(snap, written) {
        match e.state.addresses.load() {
            Some(last) if first => log::warn!(
                "{}: {written} {why}; keeping its last addresses {} until it resolves again",
                e.label,
                Shown(&last.list)
            ),
            Some(_) => {}
            None => {
                let reason = format!("not used: {written} {why}");
                if e.state.set_reason(&reason) {
                    log::warn!("{}: {reason}", e.label);
                }
            }
        }
    }
}

/// Leaves `e` out of rotation because `name` resolves only to `addr`, tether's own `ours`;
/// logs it the first time (or when the address changes), not every lookup round.
fn keep_out(e: &Endpoint, name: &str, addr: SocketAddr, ours: OwnAddr) {
    e.state.addresses.store(None);
    let why = format!(
        "not used: {name} resolves to {addr}, which is {ours}; tether would send its requests to itself in a loop"
    );
    if e.state.set_reason(&why) {
        log::warn!("{}: {why}", e.label);
    }
}

/// Addresses in a log line: `127.0.0.2:80, 127.0.0.3:80`.
struct Shown<'a>(&'a [SocketAddr]);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            a.fmt(f)?;
        }
        Ok(())
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

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_name_that_resolves_later_makes_its_endpoint_eligible() {
        let runtime = RuntimeState::default();
        let valid = Config::from_yaml(YAML, "test").unwrap();
        let names_warned: Vec<_> = valid
            .warnings
            .iter()
            .filter(|w| w.contains(".address: "))
            .collect();
        assert_eq!(names_warned.len(), 1, "{:?}", valid.warnings);
        assert!(names_warned[0].starts_with("pools[0].endpoints[1].address: "));
        let snap = Snapshot::build(valid, &runtime, 1_700_000_000);
        let later = &snap.pools[0].endpoints[1];
        assert!(!later.healthy() && !later.takes_new());
        assert!(snap.pools[0].endpoints[0].takes_new());
        assert_eq!(names(&snap), ["app-1.invalid:80"]);

        let mut tracked = std::collections::HashMap::new();
        crate::health::sync(&snap, &mut tracked, tokio::time::Instant::now());
        assert_eq!(tracked.len(), 1, "an unresolved name has nothing to check");

        failed(&snap, "app-1.invalid:80", "does not resolve: no", true);
        assert!(!later.healthy());
        assert_eq!(
            later.state.reason().as_deref(),
            Some("not used: app-1.invalid:80 does not resolve: no")
        );

        let own = OwnAddrs::default();
        assert_eq!(
            resolved(&snap, "app-1.invalid:80", &[sa("127.0.0.2:80")], &own, 5),
            1
        );
        assert!(later.takes_new());
        assert_eq!(later.first_address(), Some(sa("127.0.0.2:80")));
        crate::health::sync(&snap, &mut tracked, tokio::time::Instant::now());
        assert!(tracked.contains_key(&later.id), "checked once it resolves");
        // The same answer changes nothing; a new one moves the endpoint, its session stays.
        assert_eq!(
            resolved(&snap, "app-1.invalid:80", &[sa("127.0.0.2:80")], &own, 6),
            0
        );
        let two = [sa("127.0.0.3:80"), sa("127.0.0.4:80")];
        assert_eq!(resolved(&snap, "app-1.invalid:80", &two, &own, 7), 1);
        let now = later.state.addresses.load().unwrap();
        assert_eq!((now.list.as_slice(), now.resolved_at), (&two[..], Some(7)));
        // A failure keeps the last addresses.
        failed(&snap, "app-1.invalid:80", "does not resolve: timeout", true);
        assert!(later.takes_new());
        assert_eq!(later.first_address(), Some(two[0]));
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
        let ours = sa("127.0.0.1:18090");
        assert_eq!(resolved(&snap, "app-2.invalid:18090", &[ours], &own, 1), 0);
        assert!(!looped.takes_new() && !looped.state.addresses.is_known());
        let why = looped.state.reason().unwrap();
        assert_eq!(why, "not used: app-2.invalid:18090 resolves to 127.0.0.1:18090, which is tether's own listener 127.0.0.1:18090; tether would send its requests to itself in a loop");
        // The unmonitored pool's sync leaves the reason alone.
        crate::health::sync(&snap, &mut Default::default(), tokio::time::Instant::now());
        assert_eq!(looped.state.reason().as_deref(), Some(why.as_str()));
        // Alongside another address, tether's own is left out; once DNS points elsewhere, used.
        let both = [ours, sa("127.0.0.2:18090")];
        assert_eq!(resolved(&snap, "app-2.invalid:18090", &both, &own, 2), 1);
        assert!(looped.takes_new());
        assert_eq!(looped.state.addresses.load().unwrap().list, [both[1]]);
        // Back to tether only: out of rotation again.
        resolved(&snap, "app-2.invalid:18090", &[ours], &own, 3);
        assert!(!looped.takes_new());
    }

    #[test]
    fn origins_imported_by_name_keep_their_names_and_follow_dns() {
        let pool = r#"[{"id":"p","name":"p","origins":[{"name":"a","address":"app-1.origin.invalid","port":8443}]}]"#;
        let lb = r#"[{"id":"l","name":"x.example.com","default_pools":["p"],"fallback_pool":"p"}]"#;
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<std::path::PathBuf> = [pool, lb]
            .iter()
            .enumerate()
            .map(|(i, doc)| {
                let path = dir.path().join(format!("f{i}.json"));
                std::fs::write(&path, doc).unwrap();
                path
            })
            .collect();
        let out = crate::import::cloudflare(&files, Default::default()).unwrap();
        assert!(
            out.yaml.contains("address: app-1.origin.invalid:8443"),
            "{}",
            out.yaml
        );
        let valid =
            Config::from_yaml_with_env(&out.yaml, "imported", &|_| Some("s".repeat(32))).unwrap();
        let snap = Snapshot::build(valid, &RuntimeState::default(), 0);
        // The name, not an address found at import, is what the resolver looks up while tether runs.
        assert_eq!(names(&snap), ["app-1.origin.invalid:8443"]);
    }
}
