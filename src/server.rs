//! Building the Pingora server from a config: `server:` mapped onto `ServerConf`, one proxy
//! service with every listener, and the background services.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::config::ServerSection;
use crate::health::resolve::Resolver;
use crate::health::EndpointWatch;
use crate::instance::Instance;
use crate::ops::admin::AdminApi;
use crate::ops::graceful::LateCleanup;
use crate::ops::reload::SighupReload;
use crate::ops::state_sync::{self, StateSync};
use crate::proxy::guard::Guarded;
use crate::proxy::hold::Held;
use crate::proxy::tls_accept::TlsAcceptor;
use crate::proxy::Adapter;
use crate::telemetry::log_sink::{self, AccessLogFlush};

/// Command-line switches that Pingora itself acts on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessMode {
    pub upgrade: bool,
    pub daemon: bool,
}

/// Relative paths are taken from the directory tether was started in, also after `--daemon`.
fn absolute(base: &Path, p: &str) -> String {
    base.join(p).display().to_string()
}

/// Pingora's `ServerConf` for tether's `server:` section.
pub fn server_conf(s: &ServerSection, mode: ProcessMode, base: &Path) -> ServerConf {
    ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        pid_file: absolute(base, &s.pid_file),
        upgrade_sock: absolute(base, &s.upgrade_sock),
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        daemon: mode.daemon,
        // Daemon mode changes directory to this; keep it where relative paths make sense.
        working_directory: Some(PathBuf::from(base)),
        ..ServerConf::default()
    }
}

/// Builds and runs the server until it is told to stop and its services have ended.
pub fn run(
    live: Arc<Instance>,
    mode: ProcessMode,
    base: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let snap = live.snapshot();
    let conf = server_conf(&snap.config.server, mode, base);
    let opt = Opt {
        upgrade: mode.upgrade,
        daemon: mode.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // Bootstrap as a service, not before run(): with --daemon, run() forks first, so
    // `tether --upgrade --daemon` returns at once and the daemon waits for the sockets. Called
    // directly, it would block in the foreground until the old process sends them, and the
    // operator's SIGQUIT to the old one would come too late. Listeners wait for it.
    let bootstrap = server.bootstrap_as_a_service();
    // Runtime state (state file, the old process's state on an upgrade) is restored after the
    // sockets arrived and before any listener takes a request.
    let state = server.add_service(background_service(
        "state store",
        StateSync::new(
            live.clone(),
            mode.upgrade,
            absolute(base, &snap.config.server.upgrade_sock),
        ),
    ));
    state.add_dependency(&bootstrap);

    // Inside out: the proxy; what a client may hold on HTTP/2 (streams per connection, each
    // stream's body timed); the guard that counts connections, handshakes TLS and enforces the
    // header deadlines (SPEC 3.7); the late cleanup that keeps an upgrade from dropping a request.
    let mut app = pingora_proxy::http_proxy(&server.configuration, Adapter::new(live.clone()));
    let mut options = HttpServerOptions::default();
    // HTTP/2 with no open stream is closed after the keep-alive timeout (read at start).
    options.h2_idle_timeout = Some(Duration::from_secs(
        snap.config.limits.keepalive_timeout_seconds,
    ));
    app.server_options = Some(options);
    let app = Held::new(app, live.clone());
    let mut guarded = Guarded::new(app, live.clone());
    let mut proxy_addrs = Vec::new();
    for l in &snap.config.listeners {
        let tls = match &l.tls {
            None => None,
            Some(_) => {
                let Some(started) = snap.listener_certs(&l.address).cloned() else {
                    return Err(format!("listener {}: certificates not loaded", l.address).into());
                };
                Some(TlsAcceptor::live(live.clone(), l.address.clone(), started)?)
            }
        };
        let addr: SocketAddr = l.address.parse()?;
        guarded.listen(addr, tls);
        proxy_addrs.push(l.address.clone());
        log::info!(
            "listening on {}{}",
            l.address,
            if l.tls.is_some() { " (TLS)" } else { "" }
        );
    }
    let late = LateCleanup::new(guarded, snap.config.server.grace_period_seconds);
    let mut proxy = Service::new("tether".to_string(), late);
    // TLS listeners too are plain TCP to Pingora: the guard handshakes, counted and timed.
    for addr in &proxy_addrs {
        proxy.add_tcp(addr);
    }
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&bootstrap);
    proxy.add_dependency(&state);
    if let Some(admin) = &snap.config.admin {
        let mut service = pingora::services::listening::Service::new(
            "tether admin".to_string(),
            AdminApi { live: live.clone() },
        );
        service.threads = Some(1);
        service.add_tcp(&admin.address);
        log::info!("admin API on http://{}", admin.address);
        let admin = server.add_service(service);
        admin.add_dependency(&bootstrap);
        admin.add_dependency(&state);
    }
    server.add_service(background_service(
        "health monitors and drains",
        EndpointWatch { live: live.clone() },
    ));
    server.add_service(background_service(
        "endpoint name lookups",
        Resolver { live: live.clone() },
    ));
    server.add_service(background_service(
        "reload on SIGHUP",
        SighupReload { live: live.clone() },
    ));
    server.add_service(background_service("access log flush", AccessLogFlush));
    server.add_service(background_service(
        "status page history",
        crate::ops::history::HistorySampler { live: live.clone() },
    ));
    server.run(RunArgs::default());
    state_sync::write_at_exit(&live);
    // The last access lines of in-flight requests are still in the buffer.
    log_sink::flush()?;
    Ok(())
}
