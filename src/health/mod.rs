//! The background service that watches endpoints: it runs every pool's health monitor and
//! reports drains as they start and end.
//!
//! Tether runs its own checks on Pingora's `BackgroundService` rather than
//! pingora-load-balancing's `HttpHealthCheck`: that one cannot check `expected_body` (it
//! discards the body), reports a bare bool without the reason tether must log, and keeps its
//! verdicts per `Backends` set, while tether's endpoint set changes on every reload and its
//! health lives in `EndpointState`, which survives reloads. The checks still use Pingora's
//! HTTP client (see `probe`).
//!
//! Each round re-reads the live snapshot, so a reload is followed within [`TICK`]: a new
//! endpoint (or one whose monitor or address changed) is checked at once, a removed one is
//! forgotten, and an endpoint whose pool has no monitor counts as healthy.

mod drain_log;
pub mod monitor;
mod probe;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::monitor::{CheckFailure, MonitorSpec, Streak};
use crate::affinity::EndpointId;
use crate::balancer::{Addresses, EndpointState, Snapshot};
use crate::clock::unix_now;
use crate::instance::Instance;
use crate::tls::origin::Origin;

pub use probe::Prober;

/// The longest the service sleeps before it looks at the live snapshot again.
pub const TICK: Duration = Duration::from_millis(250);

/// Runs health checks and logs drains for the live config until shutdown.
pub struct EndpointWatch {
    pub live: Arc<Instance>,
}

/// One monitored endpoint, keyed by its [`EndpointId`] (stable across reloads).
pub(crate) struct Tracked {
    state: Arc<EndpointState>,
    pool: String,
    name: String,
    label: String,
    monitor: Arc<MonitorSpec>,
    /// The endpoint's current addresses; a check passes when one of them, tried in order, does
    /// (as a request moves on to the next address, SPEC §3.10).
    addrs: Arc<Addresses>,
    host: Option<String>,
    /// The endpoint's TLS settings, which an `https` check uses.
    origin: Origin,
    streak: Streak,
    next_due: Instant,
    running: bool,
    /// A check has completed since tether started tracking it.
    checked: bool,
}

/// A check in flight: the endpoint it is for, and the state it will report to. An endpoint
/// removed and added again while its check ran has a new state, and the check's result is
/// dropped rather than landing on it.
struct Running {
    id: EndpointId,
    state: Arc<EndpointState>,
}

/// Brings `tracked` in line with `snap`: adds new endpoints (due at once), refreshes changed
/// ones, drops removed ones, and marks endpoints of unmonitored pools healthy.
pub(crate) fn sync(snap: &Snapshot, tracked: &mut HashMap<EndpointId, Tracked>, now: Instant) {
    let mut seen = HashSet::new();
    for pool in &snap.pools {
        for e in &pool.endpoints {
            let Some(monitor) = &pool.monitor else {
                // An unresolved endpoint keeps the resolver's reason (a loop) if it has one.
                if e.state.addresses.is_known() {
                    e.state.set_reason("its pool has no monitor");
                }
                if e.state.set_healthy(true) {
                    report_transition(&pool.id, &e.name, true, "its pool has no monitor", 0);
                }
                continue;
            };
            // A name that has not resolved has nothing to check; once the resolver finds an
            // address, the endpoint is tracked like a new one and checked at once (and again
            // whenever its addresses change).
            let Some(addrs) = e.state.addresses.load() else {
                continue;
            };
            seen.insert(e.id);
            if tracked
                .get(&e.id)
                .is_some_and(|t| !Arc::ptr_eq(&t.state, &e.state))
            {
                // Removed and added again between two rounds: a new endpoint.
                tracked.remove(&e.id);
            }
            let t = tracked.entry(e.id).or_insert_with(|| Tracked {
                state: e.state.clone(),
                pool: pool.id.clone(),
                name: e.name.clone(),
                label: e.label.clone(),
                monitor: monitor.clone(),
                addrs: addrs.clone(),
                host: e.host.clone(),
                origin: e.origin.clone(),
                streak: Streak::default(),
                next_due: now,
                running: false,
                checked: false,
            });
            let moved = t.addrs.list != addrs.list;
            if t.monitor != *monitor || moved || t.host != e.host || t.origin != e.origin {
                t.monitor = monitor.clone();
                t.addrs = addrs;
                t.host = e.host.clone();
                t.origin = e.origin.clone();
                t.next_due = now;
            }
        }
    }
    tracked.retain(|k, _| seen.contains(k));
}

/// The one place a health transition is reported: the log line here, and the metrics counter
/// beside it.
fn report_transition(pool: &str, endpoint: &str, healthy: bool, reason: &str, in_a_row: u64) {
    crate::telemetry::metrics::record_health_transition(pool, endpoint, healthy);
    let run = if in_a_row > 0 {
        format!(" ({in_a_row} in a row)")
    } else {
        String::new()
    };
    if healthy {
        log::info!("{pool}/{endpoint} healthy: {reason}{run}");
    } else {
        log::warn!("{pool}/{endpoint} unhealthy: {reason}{run}");
    }
}

/// Hands a finished check to its endpoint, if that endpoint is still the one it checked.
fn finish(
    tracked: &mut HashMap<EndpointId, Tracked>,
    check: Running,
    result: Result<String, CheckFailure>,
) {
    let Some(t) = tracked.get_mut(&check.id) else {
        return;
    };
    if Arc::ptr_eq(&t.state, &check.state) {
        t.running = false;
        record(t, result);
    }
}

/// Records one check result and reports a flip of the endpoint's health.
fn record(t: &mut Tracked, result: Result<String, CheckFailure>) {
    let m = &t.monitor;
    let flip = t.streak.record(
        result.is_ok(),
        t.state.healthy(),
        m.consecutive_up,
        m.consecutive_down,
    );
    let reason = match &result {
        Ok(passed) => passed.clone(),
        Err(failure) => failure.to_string(),
    };
    t.state.set_reason(&reason);
    let first = !t.checked;
    t.checked = true;
    match flip {
        // An endpoint counts as healthy until its first check; say what that check found, so
        // an operator (and a test) can tell "healthy" from "not checked yet".
        None if first => match &result {
            Ok(_) => log::info!("{} first check passed: {reason}", t.label),
            Err(_) => log::info!(
                "{} first check failed: {reason} (1 of {} in a row)",
                t.label,
                m.consecutive_down
            ),
        },
        Some(healthy) => {
            t.state.set_healthy(healthy);
            report_transition(&t.pool, &t.name, healthy, &reason, t.streak.in_a_row());
        }
        None if result.is_err() => log::debug!("{} check failed: {reason}", t.label),
        None => {}
    }
}

#[async_trait]
impl BackgroundService for EndpointWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let prober = Arc::new(Prober::default());
        let mut tracked: HashMap<EndpointId, Tracked> = HashMap::new();
        let mut drains = drain_log::DrainLog::default();
        let mut checks = JoinSet::new();
        // Which endpoint each running check is for, so a check that panicked still frees its
        // endpoint for the next round instead of leaving it "running" for ever.
        let mut running: HashMap<tokio::task::Id, Running> = HashMap::new();
        loop {
            let snap = self.live.snapshot();
            let now = Instant::now();
            sync(&snap, &mut tracked, now);
            drains.observe(&snap, unix_now());
            for (&id, t) in tracked.iter_mut() {
                if t.running || t.next_due > now {
                    continue;
                }
                t.running = true;
                t.next_due = now + t.monitor.interval;
                let (prober, spec, addrs, host, origin) = (
                    prober.clone(),
                    t.monitor.clone(),
                    t.addrs.clone(),
                    t.host.clone(),
                    t.origin.clone(),
                );
                let handle = checks.spawn(async move {
                    prober
                        .check_any(&spec, &addrs.list, host.as_deref(), &origin)
                        .await
                });
                let state = t.state.clone();
                running.insert(handle.id(), Running { id, state });
            }
            let wake = tracked
                .values()
                .filter(|t| !t.running)
                .map(|t| t.next_due)
                .fold(now + TICK, Instant::min);
            tokio::select! {
                Some(done) = checks.join_next_with_id(), if !checks.is_empty() => {
                    let (id, result) = match done {
                        Ok((id, result)) => (id, result),
                        Err(e) => (e.id(), Err(CheckFailure::Io(format!("check failed: {e}")))),
                    };
                    if let Some(check) = running.remove(&id) {
                        finish(&mut tracked, check, result);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::RuntimeState;
    use crate::config::Config;

    fn snap(yaml: &str, runtime: &RuntimeState) -> Snapshot {
        let config = Config::from_yaml(yaml, "test").unwrap();
        Snapshot::build(config, runtime, 1_700_000_000)
    }

    const WITH: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
monitors: [{ id: m, interval: 30 }]
pools:
  - id: web
    monitor: m
    endpoints:
      - { name: a, address: "127.0.0.1:9001" }
      - { name: b, address: "127.0.0.1:9002" }
load_balancers: [{ name: "*", default_pools: [web] }]
"#;

    #[test]
    fn sync_follows_reloads() {
        let runtime = RuntimeState::default();
        let first = snap(WITH, &runtime);
        let mut tracked = HashMap::new();
        let t0 = Instant::now();
        sync(&first, &mut tracked, t0);
        assert_eq!(tracked.len(), 2);
        assert!(
            tracked.values().all(|t| t.next_due == t0),
            "checked at once"
        );

        // A reload that keeps the endpoints keeps their schedule and health.
        let a = &first.pools[0].endpoints[0];
        a.state.set_healthy(false);
        for t in tracked.values_mut() {
            t.next_due = t0 + Duration::from_secs(30);
        }
        let same = snap(WITH, &runtime);
        sync(&same, &mut tracked, t0 + Duration::from_secs(1));
        assert!(tracked.values().all(|t| t.next_due > t0));
        assert!(!same.pools[0].endpoints[0].state.healthy());

        // A changed monitor is applied and checked at once; a removed endpoint is forgotten.
        let changed = WITH
            .replace("interval: 30", "interval: 5")
            .replace("      - { name: b, address: \"127.0.0.1:9002\" }\n", "");
        let t1 = t0 + Duration::from_secs(2);
        sync(&snap(&changed, &runtime), &mut tracked, t1);
        assert_eq!(tracked.len(), 1);
        let t = tracked.values().next().unwrap();
        assert_eq!((t.next_due, t.monitor.interval.as_secs()), (t1, 5));

        // Without a monitor, every endpoint counts as healthy again.
        let none = WITH.replace("    monitor: m\n", "");
        let unmonitored = snap(&none, &runtime);
        sync(&unmonitored, &mut tracked, t1);
        assert!(tracked.is_empty());
        assert!(unmonitored.pools[0].endpoints[0].state.healthy());
    }

    #[test]
    fn a_check_of_a_removed_endpoint_does_not_land_on_its_successor() {
        let runtime = RuntimeState::default();
        let with_down_1 = WITH.replace("interval: 30", "interval: 30, consecutive_down: 1");
        let first = snap(&with_down_1, &runtime);
        let mut tracked = HashMap::new();
        let t0 = Instant::now();
        sync(&first, &mut tracked, t0);
        let a = &first.pools[0].endpoints[0];
        let check = Running {
            id: a.id,
            state: a.state.clone(),
        };
        // While the check runs, `a` is removed (one round sees it gone) and added again.
        let without_a =
            with_down_1.replace("      - { name: a, address: \"127.0.0.1:9001\" }\n", "");
        drop(first);
        sync(&snap(&without_a, &runtime), &mut tracked, t0);
        let again = snap(&with_down_1, &runtime);
        sync(&again, &mut tracked, t0);
        finish(&mut tracked, check, Err(CheckFailure::Io("refused".into())));
        let new_a = &again.pools[0].endpoints[0];
        assert!(
            new_a.state.healthy(),
            "the old check's failure stays with the old endpoint"
        );
        assert_eq!(tracked[&new_a.id].streak.in_a_row(), 0);

        // A check of the same endpoint is recorded.
        let check = Running {
            id: new_a.id,
            state: new_a.state.clone(),
        };
        finish(&mut tracked, check, Err(CheckFailure::Io("refused".into())));
        assert!(!new_a.state.healthy());
    }

    #[test]
    fn an_endpoint_readded_between_rounds_is_tracked_afresh() {
        let runtime = RuntimeState::default();
        let first = snap(WITH, &runtime);
        let mut tracked = HashMap::new();
        let t0 = Instant::now();
        sync(&first, &mut tracked, t0);
        let id = first.pools[0].endpoints[0].id;
        tracked.get_mut(&id).unwrap().next_due = t0 + Duration::from_secs(30);
        let without_a = WITH.replace("      - { name: a, address: \"127.0.0.1:9001\" }\n", "");
        // The round in between is missed: only the re-added endpoint is seen.
        drop(snap(&without_a, &runtime));
        let again = snap(WITH, &runtime);
        sync(&again, &mut tracked, t0);
        let t = &tracked[&id];
        assert!(Arc::ptr_eq(&t.state, &again.pools[0].endpoints[0].state));
        assert_eq!(t.next_due, t0, "a new endpoint is checked at once");
    }
}
