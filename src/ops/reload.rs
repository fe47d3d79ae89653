//! Hot reload: on SIGHUP re-read the config file; an invalid file is logged error by error and
//! the running config stays in effect.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::live::Live;

/// Reloads `live` and logs the result; shared by SIGHUP and the admin API.
pub fn reload_and_log(live: &Live) -> Result<(), crate::config::ConfigErrors> {
    match live.reload() {
        Ok(()) => {
            log::info!("reloaded {}", live.path().display());
            Ok(())
        }
        Err(errs) => {
            for e in &errs.0 {
                log::error!("reload refused, keeping the running config: {e}");
            }
            Err(errs)
        }
    }
}

/// A background service that reloads on every SIGHUP until shutdown.
pub struct SighupReload {
    pub live: Arc<Live>,
}

#[async_trait]
impl BackgroundService for SighupReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGHUP, reload by signal is off: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let _ = reload_and_log(&self.live);
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
