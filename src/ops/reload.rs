//! Hot reload: on SIGHUP (or `POST /reload`) re-read the config file; an invalid file is logged
//! error by error and the running config stays in effect. A reload swaps routing (balancers,
//! pools, endpoints, affinity, secrets, trusted proxies) and the admin token; what is bound or
//! set at process start — sockets, `server:`, HTTP/2's idle timeout — waits for a graceful
//! upgrade, and the log says so rather than leaving an operator to believe it took effect. The
//! other `limits:` apply to every connection accepted after the reload.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{Config, Listener};
use crate::instance::Instance;

use crate::telemetry::metrics;

/// Reloads `live` and logs the result; shared by SIGHUP and the admin API. Counted in metrics.
pub fn reload_and_log(live: &Instance) -> Result<(), crate::config::ConfigErrors> {
    match live.reload() {
        Ok(snap) => {
            metrics::record_reload(true);
            log::info!("reloaded {}", live.path().display());
            for change in needs_upgrade(live.started_with(), &snap.config) {
                log::warn!("{change}: not applied by a reload; it needs a graceful upgrade (tether --upgrade, then SIGQUIT to the running process)");
            }
            Ok(())
        }
        Err(errs) => {
            metrics::record_reload(false);
            for e in &errs.0 {
                log::error!("reload refused, keeping the running config: {e}");
            }
            Err(errs)
        }
    }
}

/// A listener as far as an upgrade is concerned: its address and whether it speaks TLS. Its
/// certificates are re-read by every reload (SPEC §3.8).
fn describe(l: &Listener) -> String {
    match &l.tls {
        None => l.address.clone(),
        Some(_) => format!("{} (TLS)", l.address),
    }
}

/// The differences between the config the process started with and `new` that only a graceful
/// upgrade (a new process) puts into effect, one sentence each; empty when there are none.
pub fn needs_upgrade(started: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let old: Vec<String> = started.listeners.iter().map(describe).collect();
    let now: Vec<String> = new.listeners.iter().map(describe).collect();
    let old_addr: Vec<&str> = started
        .listeners
        .iter()
        .map(|l| l.address.as_str())
        .collect();
    let new_addr: Vec<&str> = new.listeners.iter().map(|l| l.address.as_str()).collect();
    for (l, d) in new.listeners.iter().zip(&now) {
        if !old_addr.contains(&l.address.as_str()) {
            out.push(format!("listener {d} added"));
        } else if !old.contains(d) {
            out.push(format!("listener {d} changed"));
        }
    }
    for (l, d) in started.listeners.iter().zip(&old) {
        if !new_addr.contains(&l.address.as_str()) {
            out.push(format!("listener {d} removed"));
        }
    }
    // The ACME service orders what the process started with (SPEC §3.11).
    let acme = |l: &Listener| l.tls.as_ref().and_then(|t| t.acme.clone());
    for l in &new.listeners {
        let before = started.listeners.iter().find(|o| o.address == l.address);
        if before.is_some_and(|o| acme(o) != acme(l)) {
            out.push(format!("listener {}: tls.acme changed", l.address));
        }
    }
    let admin_addr = |c: &Config| c.admin.as_ref().map(|a| a.address.clone());
    match (admin_addr(started), admin_addr(new)) {
        (a, b) if a == b => {}
        (None, Some(b)) => out.push(format!("admin listener {b} added")),
        (Some(a), None) => out.push(format!("admin listener {a} removed")),
        (a, b) => out.push(format!(
            "admin address changed from {} to {}",
            a.unwrap_or_default(),
            b.unwrap_or_default()
        )),
    }
    if format!("{:?}", started.server) != format!("{:?}", new.server) {
        out.push("the server: section changed".to_string());
    }
    if started.state != new.state {
        out.push("the state: section changed".to_string());
    }
    // The other limits are read by the connection guard for every new connection; only the
    // HTTP/2 idle timeout is handed to Pingora once, at start.
    if started.limits.keepalive_timeout_seconds != new.limits.keepalive_timeout_seconds {
        out.push(
            "limits.keepalive_timeout_seconds changed for HTTP/2 (new HTTP/1 connections use it at once)"
                .to_string(),
        );
    }
    out
}

/// A background service that reloads on every SIGHUP until shutdown.
pub struct SighupReload {
    pub live: Arc<Instance>,
}

#[async_trait]
impl BackgroundService for SighupReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGHUP, reload by signal is off: {e}");
                // Degraded, not dead: a service that returns before shutdown ends the process.
                let _ = shutdown.changed().await;
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    // A reload looks up endpoint host names: blocking work, kept off the reactor.
                    let live = self.live.clone();
                    let _ = tokio::task::spawn_blocking(move || reload_and_log(&live)).await;
                }
                _ = shutdown.changed() => {
                    for (balancer, n) in self.live.runtime.session_counts() {
                        log::info!("shutting down with {n} header sessions on {balancer}");
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml_extra: &str) -> Config {
        let yaml = format!(
            "listeners:\n  - address: 127.0.0.1:8080\n{yaml_extra}\
             pools:\n  - id: web\n    endpoints:\n      - {{ name: a, address: \"127.0.0.1:9001\" }}\n\
             load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, yaml).unwrap();
        Config::load(&path).unwrap().file
    }

    #[test]
    fn routing_changes_need_no_upgrade() {
        let a = config("");
        let b = config("trusted_proxies: [10.0.0.0/8]\n");
        assert!(needs_upgrade(&a, &b).is_empty());
    }

    #[test]
    fn limits_read_per_connection_need_no_upgrade() {
        let a = config("");
        let b = config(
            "limits: { max_connections: 5, request_header_timeout_seconds: 3, max_request_header_bytes: 4096 }\n",
        );
        assert_eq!(needs_upgrade(&a, &b), Vec::<String>::new());
    }

    #[test]
    fn listener_admin_and_server_changes_are_named() {
        let a = config("");
        let b = config(
            "  - address: 127.0.0.1:8081\nadmin: { address: 127.0.0.1:9999 }\nserver: { threads: 4 }\nlimits: { keepalive_timeout_seconds: 5 }\n",
        );
        let changes = needs_upgrade(&a, &b).join("\n");
        assert!(
            changes.contains("listener 127.0.0.1:8081 added"),
            "{changes}"
        );
        assert!(
            changes.contains("admin listener 127.0.0.1:9999 added"),
            "{changes}"
        );
        assert!(changes.contains("server: section"), "{changes}");
        assert!(
            changes.contains("limits.keepalive_timeout_seconds"),
            "{changes}"
        );
        let removed = needs_upgrade(&b, &a).join("\n");
        assert!(
            removed.contains("listener 127.0.0.1:8081 removed"),
            "{removed}"
        );
    }
}
