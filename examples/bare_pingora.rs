//! The floor of `make bench`: the smallest Pingora proxy that balances, so that tether's figures
//! can be read as "Pingora's own cost" plus "what tether adds". `bare_pingora LISTEN UPSTREAM...`
//! proxies every request round-robin (pingora-load-balancing's `RoundRobin`) over the upstreams,
//! on one thread, with Pingora's defaults and the system allocator — what a Pingora user gets.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::{Error, Result};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::LoadBalancer;
use pingora_proxy::{ProxyHttp, Session};

struct Bare(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let backend = self
            .0
            .select(b"", 256)
            .ok_or_else(|| Error::new_str("no upstream"))?;
        Ok(Box::new(HttpPeer::new(backend.addr, false, String::new())))
    }
}

/// Runs the proxy; shared with `bare_pingora_mimalloc`, which differs only in the allocator.
pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM [UPSTREAM ...]");
        std::process::exit(2);
    }
    let lb = LoadBalancer::<RoundRobin>::try_from_iter(args[1..].iter().map(String::as_str))
        .unwrap_or_else(|e| {
            eprintln!("bad upstream address: {e}");
            std::process::exit(2);
        });
    let pid = std::process::id();
    // One thread, no work stealing, like tether's benchmark config; files unique per process.
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        pid_file: format!("/tmp/bare_pingora.{pid}.pid"),
        upgrade_sock: format!("/tmp/bare_pingora.{pid}.sock"),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Bare(Arc::new(lb)));
    proxy.add_tcp(&args[0]);
    server.add_service(proxy);
    server.run_forever();
}
