//! The commit half of a reload: a compiled snapshot takes the runtime state that outlives
//! snapshots (endpoint states, header-session stores) from the registry, and its request
//! counters, just before it is stored. `crate::instance::Instance` runs it under the registry lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::affinity::sessions::SessionStore;
use crate::config::Affinity;
use crate::telemetry::metrics::BalancerCounters;

use super::decision::Outcome;
use super::snapshot::Snapshot;
use super::state::Registry;

impl Registry {
    /// Commits `snap`'s claim on runtime state at `now`: each endpoint takes the state of the
    /// endpoint with its pool id and name (its fresh one when it is new), its drain clock
    /// follows the file's `enabled`; each `header` balancer takes its session store (resized
    /// when its limits changed) and every balancer its request counters. State of endpoints
    /// and balancers `snap` lacks is dropped, so the registry holds exactly what `snap` uses.
    pub fn adopt(&mut self, snap: &mut Snapshot, now: u64) {
        let mut endpoints = HashMap::with_capacity(self.endpoints.len());
        for pool in &mut snap.pools {
            for e in &mut pool.endpoints {
                let key = (pool.id.clone(), e.name.clone());
                if let Some(state) = self.endpoints.remove(&key) {
                    e.state = state;
                    // Same `address`: the resolver's latest stays; a new one starts from its seed.
                    e.state.addresses.adopt(e.addr.as_str(), e.addr.all(), now);
                }
                e.state
                    .run_drain_clock(e.enabled && !e.state.admin_drained(), now);
                endpoints.insert(key, e.state.clone());
            }
        }
        self.endpoints = endpoints;

        let pools = &snap.pools;
        for b in &mut snap.balancers {
            let mut reach: Vec<Vec<Option<(&str, &str)>>> = pools
                .iter()
                .map(|p| vec![None; p.endpoints.len()])
                .collect();
            for r in b.by_id.values() {
                let pool = &pools[r.pool];
                reach[r.pool][r.endpoint] = Some((&pool.id, &pool.endpoints[r.endpoint].name));
            }
            let outcomes = Outcome::ALL.map(Outcome::as_str);
            b.counters = Some(BalancerCounters::new(&b.name, &outcomes, &reach));
        }

        let mut sessions = HashMap::new();
        for b in &mut snap.balancers {
            if b.affinity.mode != Affinity::Header {
                continue;
            }
            let (ttl, capacity) = (Duration::from_secs(b.affinity.ttl), b.affinity.max_sessions);
            let store = match self.sessions.remove(&b.name) {
                Some(s) if s.has_limits(ttl, capacity) => s,
                Some(s) => Arc::new(s.resized(ttl, capacity)),
                None => Arc::new(SessionStore::new(ttl, capacity)),
            };
            sessions.insert(b.name.clone(), store.clone());
            b.sessions = Some(store);
        }
        self.sessions = sessions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoints: &[&str]) -> crate::config::Validated {
        let eps: String = endpoints
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "      - {{ name: {n}, address: \"127.0.0.1:{}\" }}\n",
                    9001 + i
                )
            })
            .collect();
        let yaml = format!(
            "listeners: [{{ address: \"127.0.0.1:8080\" }}]\npools:\n  - id: web\n    endpoints:\n{eps}load_balancers: [{{ name: \"*\", default_pools: [web] }}]\n"
        );
        crate::config::Config::from_yaml(&yaml, "test").unwrap()
    }

    #[test]
    fn adopt_keeps_state_of_surviving_endpoints() {
        let rt = crate::balancer::RuntimeState::default();
        let first = Snapshot::build(config(&["a", "b"]), &rt, 100);
        first.pools[0].endpoints[0].state.set_healthy(false);
        let second = Snapshot::build(config(&["a"]), &rt, 100);
        let (a1, a2) = (&first.pools[0].endpoints[0], &second.pools[0].endpoints[0]);
        assert!(Arc::ptr_eq(&a1.state, &a2.state));
        assert!(!a2.state.healthy());
        let third = Snapshot::build(config(&["a", "b"]), &rt, 100);
        assert!(
            !Arc::ptr_eq(
                &first.pools[0].endpoints[1].state,
                &third.pools[0].endpoints[1].state
            ),
            "a removed endpoint starts afresh"
        );
    }

    #[test]
    fn a_compiled_snapshot_claims_nothing_until_adopted() {
        let rt = crate::balancer::RuntimeState::default();
        let live = Snapshot::build(config(&["a"]), &rt, 100);
        live.pools[0].endpoints[0].state.drain(100);
        // A compile that is never committed (a reload that fails later) leaves the registry as
        // the live snapshot uses it.
        let draft = Snapshot::compile(config(&["b"]), &rt.random_keys);
        drop(draft);
        let next = Snapshot::build(config(&["a"]), &rt, 100);
        assert!(Arc::ptr_eq(
            &live.pools[0].endpoints[0].state,
            &next.pools[0].endpoints[0].state
        ));
        assert!(next.pools[0].endpoints[0].state.admin_drained());
    }

    #[test]
    fn a_reload_keeps_what_the_resolver_found_unless_the_address_changed() {
        let yaml = |addr: &str| {
            format!("listeners: [{{ address: \"127.0.0.1:8080\" }}]\npools:\n  - id: web\n    endpoints: [{{ name: a, address: \"{addr}\" }}]\nload_balancers: [{{ name: \"*\", default_pools: [web] }}]\n")
        };
        let load = |addr: &str| crate::config::Config::from_yaml(&yaml(addr), "test").unwrap();
        let rt = crate::balancer::RuntimeState::default();
        let first = Snapshot::build(load("app.invalid:80"), &rt, 100);
        let found = crate::balancer::Addresses {
            written: "app.invalid:80".into(),
            list: vec!["127.0.0.3:80".parse().unwrap()],
            resolved_at: Some(150),
        };
        first.pools[0].endpoints[0]
            .state
            .addresses
            .store(Some(found.clone()));
        // A reload of the same address: the resolver's answer stays in effect, no lookup lost.
        let same = Snapshot::build(load("app.invalid:80"), &rt, 200);
        let kept = same.pools[0].endpoints[0].state.addresses.load().unwrap();
        assert_eq!(*kept, found);
        assert!(same.pools[0].endpoints[0].takes_new());
        // The endpoint now written as another address: the old one's addresses are not used.
        let moved = Snapshot::build(load("127.0.0.4:81"), &rt, 300);
        let e = &moved.pools[0].endpoints[0];
        assert!(
            Arc::ptr_eq(&e.state, &first.pools[0].endpoints[0].state),
            "same endpoint"
        );
        assert_eq!(e.first_address(), Some("127.0.0.4:81".parse().unwrap()));
    }
}
