//! The last minutes of traffic for the status page's sparklines: per-endpoint requests/s and
//! per-balancer affinity outcomes/s, sampled every [`SAMPLE_EVERY`] from counters that exist
//! anyway (`EndpointState::requests`, `tether_affinity_outcomes_total`). The request path does
//! not know this module exists: only the sampler task writes here, only the admin page reads.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::affinity::EndpointId;
use crate::balancer::Snapshot;
use crate::instance::Instance;

/// Time between two samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept per series: five minutes.
pub const KEEP: usize = 150;

/// Outcome groups drawn per balancer, with the `tether_affinity_outcomes_total` outcomes each
/// one sums.
pub const OUTCOME_GROUPS: [(&str, &[&str]); 4] = [
    ("new", &["new"]),
    ("kept", &["kept"]),
    ("re-pinned", &["expired", "invalid", "unhealthy", "drained"]),
    ("failover", &["failover-temporary", "failover-sticky"]),
];

/// A counter's rate per second at each sample, oldest first.
#[derive(Debug, Default, Clone)]
pub struct Series {
    last: Option<u64>,
    pub rates: VecDeque<f64>,
}

impl Series {
    /// Adds the rate since the previous sample of the counter `total`, `secs` later.
    fn sample(&mut self, total: u64, secs: f64) {
        if let Some(last) = self.last {
            let rate = total.saturating_sub(last) as f64 / secs.max(0.001);
            if self.rates.len() == KEEP {
                self.rates.pop_front();
            }
            self.rates.push_back(rate);
        }
        self.last = Some(total);
    }
}

#[derive(Debug, Default)]
struct History {
    /// By endpoint id (pool id + name), as runtime state is keyed: a renamed label or a
    /// re-used position never inherits another endpoint's series.
    endpoints: HashMap<EndpointId, Series>,
    /// By balancer name, one series per [`OUTCOME_GROUPS`] entry.
    outcomes: HashMap<String, [Series; 4]>,
}

static HISTORY: LazyLock<Mutex<History>> = LazyLock::new(Mutex::default);

fn history() -> std::sync::MutexGuard<'static, History> {
    HISTORY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Requests/s of endpoint `id`, oldest first.
pub fn endpoint_rates(id: EndpointId) -> Vec<f64> {
    history()
        .endpoints
        .get(&id)
        .map(|s| s.rates.iter().copied().collect())
        .unwrap_or_default()
}

/// Affinity outcomes/s of `balancer`, one list per [`OUTCOME_GROUPS`] entry.
pub fn outcome_rates(balancer: &str) -> [Vec<f64>; 4] {
    let h = history();
    let get = |i: usize| {
        h.outcomes
            .get(balancer)
            .map(|s| s[i].rates.iter().copied().collect())
            .unwrap_or_default()
    };
    [get(0), get(1), get(2), get(3)]
}

/// Takes one sample of every endpoint and balancer in `snap`; forgets what it no longer has.
pub fn sample(snap: &Snapshot, secs: f64) {
    let counts = crate::telemetry::metrics::affinity_counts();
    let mut h = history();
    let mut seen = Vec::new();
    for e in snap.pools.iter().flat_map(|p| &p.endpoints) {
        let total = e.state.requests.load(Relaxed);
        h.endpoints.entry(e.id).or_default().sample(total, secs);
        seen.push(e.id);
    }
    h.endpoints.retain(|k, _| seen.contains(k));
    for b in &snap.balancers {
        let series = h.outcomes.entry(b.name.clone()).or_default();
        for (i, (_, outcomes)) in OUTCOME_GROUPS.iter().enumerate() {
            let total: u64 = outcomes
                .iter()
                .filter_map(|o| counts.get(&(b.name.clone(), (*o).to_string())))
                .sum();
            series[i].sample(total, secs);
        }
    }
    h.outcomes
        .retain(|k, _| snap.balancers.iter().any(|b| &b.name == k));
}

/// Samples the live snapshot every [`SAMPLE_EVERY`] until shutdown.
pub struct HistorySampler {
    pub live: Arc<Instance>,
}

#[async_trait]
impl BackgroundService for HistorySampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = Instant::now();
            sample(
                &self.live.snapshot(),
                now.duration_since(last).as_secs_f64(),
            );
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keeps_rates_of_the_last_minutes() {
        let mut s = Series::default();
        s.sample(100, 2.0);
        assert!(s.rates.is_empty(), "the first sample only sets the base");
        s.sample(110, 2.0);
        s.sample(110, 2.0);
        assert_eq!(s.rates, [5.0, 0.0]);
        for i in 0..KEEP as u64 * 2 {
            s.sample(110 + i, 1.0);
        }
        assert_eq!(s.rates.len(), KEEP);
        assert_eq!(s.rates.back(), Some(&1.0));
    }
}
