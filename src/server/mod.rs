//! Building the Pingora server from a config: `server:` mapped onto `ServerConf`, one proxy
//! service with every listener, and the background services. Listening sockets are bound by
//! tether itself ([`listen`]) and every service is watched ([`vital`]), so that a start either
//! listens or says why not, and a process never runs on half alive (SPEC §1).

mod listen;
mod vital;

/// Inside an `impl ServiceWithDependents for Wrapper<S>` whose field `inner` is the wrapped
/// service: every method but `start_service` answered by `inner`, so a wrapper writes only the
/// start it changes (as `proxy::conn::delegate` does for streams).
macro_rules! delegate_service_but_start {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }

        fn threads(&self) -> Option<usize> {
            self.inner.threads()
        }

        fn runtime_opts_override(
            &self,
            global: &pingora::server::RuntimeOpts,
        ) -> Option<pingora::server::RuntimeOpts> {
            self.inner.runtime_opts_override(global)
        }

        fn on_startup_delay(&self, time_waited: std::time::Duration) {
            self.inner.on_startup_delay(time_waited)
        }

        // Pingora closes inherited sockets no service claims only when every service lists its
        // own.
        fn listen_addresses(&self) -> Option<Vec<String>> {
            self.inner.listen_addresses()
        }
    };
}
use delegate_service_but_start;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use pingora::services::{ServiceHandle, ServiceWithDependents};

use crate::acme::AcmeService;
use crate::config::ServerSection;
use crate::dns::Resolver;
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

pub use listen::BindError;
use listen::{BoundFirst, Endpoint};
use vital::Vital;

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
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
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
    ignore_sighup_until_reload_catches_it();
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
    let state = add_vital(
        &mut server,
        background_service(
            "state store",
            StateSync::new(
                live.clone(),
                mode.upgrade,
                absolute(base, &snap.config.server.upgrade_sock),
            ),
        ),
    );
    state.add_dependency(&bootstrap);

    let (proxy, mut proxy_endpoints) = proxy_service(&server, &live)?;
    let mut admin = snap
        .config
        .admin
        .as_ref()
        .map(|a| admin_service(&a.address, &live));
    // A fresh start binds in the foreground, before Pingora daemonizes, so that `--daemon` too
    // reports a failure on the terminal and exits non-zero. An upgrade cannot: the old process
    // holds the addresses until it sends them, so its new listeners are bound in the service.
    if !mode.upgrade {
        let admin_endpoint = admin.iter_mut().map(|(_, e)| e);
        bind_in_foreground(proxy_endpoints.iter_mut().chain(admin_endpoint))?;
    }
    let proxy = add_vital(&mut server, BoundFirst::new(proxy, proxy_endpoints));
    proxy.add_dependency(&bootstrap);
    proxy.add_dependency(&state);
    if live.acme.enabled {
        // After the state store (with Redis, the certificates are kept there); the listeners
        // wait until it serves what is stored.
        let acme = add_vital(
            &mut server,
            background_service("acme certificates", AcmeService { live: live.clone() }),
        );
        acme.add_dependency(&state);
        proxy.add_dependency(&acme);
    }
    if let Some((service, endpoint)) = admin {
        let admin = add_vital(&mut server, BoundFirst::new(service, vec![endpoint]));
        admin.add_dependency(&bootstrap);
        admin.add_dependency(&state);
    }
    add_background(&mut server, &live);
    server.run(RunArgs::default());
    state_sync::write_at_exit(&live);
    // The last access lines of in-flight requests are still in the buffer.
    log_sink::flush()?;
    Ok(())
}

/// The listeners accept before the reload service catches SIGHUP, and an uncaught SIGHUP ends
/// the process (its default action): one sent by a supervisor or a log rotation in those
/// milliseconds would kill a tether that just started. Ignored until then; the reload service's
/// handler replaces this (a reload asked for before it runs is not needed: the file was just
/// read).
fn ignore_sighup_until_reload_catches_it() {
    // SAFETY: SIG_IGN installs no handler code; it only sets the disposition, which the reload
    // service's own registration later replaces.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// Binds every endpoint now, then announces them all: a start that fails announces nothing.
fn bind_in_foreground<'a>(
    endpoints: impl Iterator<Item = &'a mut Endpoint>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut bound = Vec::new();
    for endpoint in endpoints {
        endpoint.bind_now()?;
        bound.push(endpoint);
    }
    bound.iter().for_each(|e| e.announce());
    Ok(())
}

/// The proxy service as Pingora runs it.
type ProxyService = Service<LateCleanup<Guarded<Held<pingora_proxy::HttpProxy<Adapter>>>>>;

/// The proxy service with every listener, and their endpoints (address + announcement).
/// Inside out: the proxy; what a client may hold on HTTP/2 (streams per connection, each
/// stream's body timed); the guard that counts connections, handshakes TLS and enforces the
/// header deadlines (SPEC 3.7); the late cleanup that keeps an upgrade from dropping a request.
fn proxy_service(
    server: &Server,
    live: &Arc<Instance>,
) -> Result<(ProxyService, Vec<Endpoint>), Box<dyn std::error::Error>> {
    let snap = live.snapshot();
    let mut app = pingora_proxy::http_proxy(&server.configuration, Adapter::new(live.clone()));
    let mut options = HttpServerOptions::default();
    // HTTP/2 with no open stream is closed after the keep-alive timeout (read at start).
    options.h2_idle_timeout = Some(Duration::from_secs(
        snap.config.limits.keepalive_timeout_seconds,
    ));
    app.server_options = Some(options);
    let app = Held::new(app, live.clone());
    let mut guarded = Guarded::new(app, live.clone());
    let mut proxy_endpoints = Vec::new();
    for l in &snap.config.listeners {
        let tls = match &l.tls {
            None => None,
            Some(_) => {
                let Some(slot) = live.cert_slots.slot(&l.address) else {
                    return Err(format!("listener {}: certificates not loaded", l.address).into());
                };
                Some(TlsAcceptor::new(l.address.clone(), slot)?)
            }
        };
        let addr: SocketAddr = l.address.parse()?;
        guarded.listen(addr, tls);
        let tls_note = if l.tls.is_some() { " (TLS)" } else { "" };
        proxy_endpoints.push(Endpoint::new(
            &l.address,
            format!("listening on {}{tls_note}", l.address),
        ));
    }
    let late = LateCleanup::new(guarded, snap.config.server.grace_period_seconds);
    let mut proxy = Service::new("tether".to_string(), late);
    // TLS listeners too are plain TCP to Pingora: the guard handshakes, counted and timed.
    for l in &snap.config.listeners {
        proxy.add_listener(listener_config(&l.address));
    }
    Ok((proxy, proxy_endpoints))
}

/// A client listener: a TCP socket with unbuffered reads and writes. Pingora's defaults give
/// every connection a 64 KiB read buffer and a 1460-byte write buffer for its whole life, most
/// of an idle connection's memory. Pingora's HTTP/1 reads go into its own header and body
/// buffers anyway, OpenSSL reads ahead a record at a time (`tls::acceptor`), and the guard's
/// stream gathers a response's writes in a buffer freed at each flush (`conn::coalesce`).
/// Figures in bench/README.md ("Memory").
fn listener_config(address: &str) -> ListenerConfig {
    ListenerConfig::tcp(address).l4_buffer(L4BufferSettings::unbuffered())
}

/// Adds `service` so that its death ends the process ([`vital`]).
fn add_vital(server: &mut Server, service: impl ServiceWithDependents + 'static) -> ServiceHandle {
    let phases = server.watch_execution_phase();
    server.add_service(Vital::new(service, phases))
}

/// The admin API's service on `address`, and that address to bind.
fn admin_service(address: &str, live: &Arc<Instance>) -> (Service<AdminApi>, Endpoint) {
    let mut service = Service::new("tether admin".to_string(), AdminApi { live: live.clone() });
    service.threads = Some(1);
    service.add_tcp(address);
    let endpoint = Endpoint::new(address, format!("admin API on http://{address}"));
    (service, endpoint)
}

/// The services that run beside the listeners for the life of the process.
fn add_background(server: &mut Server, live: &Arc<Instance>) {
    add_vital(
        server,
        background_service(
            "health monitors and drains",
            EndpointWatch { live: live.clone() },
        ),
    );
    add_vital(
        server,
        background_service("endpoint name lookups", Resolver { live: live.clone() }),
    );
    add_vital(
        server,
        background_service("reload on SIGHUP", SighupReload { live: live.clone() }),
    );
    add_vital(
        server,
        background_service("access log flush", AccessLogFlush),
    );
    add_vital(
        server,
        background_service(
            "status page history",
            crate::ops::history::HistorySampler { live: live.clone() },
        ),
    );
}
