//! Snapshots from YAML for unit tests: the one place a test turns a config into a snapshot, and
//! the config most state tests start from, so a schema change is made here once.

use super::{RuntimeState, Snapshot};
use crate::config::Config;

/// One pool `web` with endpoints `a` and `b` on loopback, behind the balancer `"*"`, whose
/// further settings are `balancer` (YAML lines indented as its keys, e.g.
/// `"    session_affinity: header\n"`).
pub fn web_ab(balancer: &str) -> String {
    format!(
        r#"
listeners: [{{ address: "127.0.0.1:8080" }}]
pools:
  - id: web
    endpoints:
      - {{ name: a, address: "127.0.0.1:9001" }}
      - {{ name: b, address: "127.0.0.1:9002" }}
load_balancers:
  - name: "*"
    default_pools: [web]
{balancer}"#
    )
}

/// The snapshot of `yaml` at `now`, its runtime state fresh; panics with the config's errors.
pub fn snapshot(yaml: &str, now: u64) -> Snapshot {
    let config = Config::from_yaml(yaml, "test").unwrap_or_else(|e| panic!("{e}"));
    Snapshot::build(config, &RuntimeState::default(), now)
}
