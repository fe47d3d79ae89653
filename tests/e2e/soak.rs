//! The soak (issue 7): steady cookie and header load for about two minutes while one endpoint is
//! killed and restarted, another is drained and undrained through the admin API, and the config
//! is reloaded every few seconds. Not part of `make test`: run it with `make soak`.
//!
//! Meanwhile a hostile crowd (slowloris, half-header keep-alive, silent TLS, idle HTTP/2, HTTP/2
//! streams whose bodies never come, clients that never read, requests into a loop) comes and
//! goes, a few hundred connections at a time.
//!
//! With `temporary` failover and at least one healthy endpoint the client must see zero errors,
//! no pin of an untouched endpoint may break, and RSS and open files must not grow beyond noise.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::hostile_mix::{relay, HostileMix, Targets};
use crate::common::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Files (sockets included) the process has open.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    broken_pins: AtomicU64,
    repins: AtomicU64,
}

impl Tally {
    fn error(&self, class: String) {
        *self.errors.lock().unwrap().entry(class).or_default() += 1;
    }
}

#[test]
#[ignore = "two-minute soak: run with `make soak`"]
fn soak_loses_nothing() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let mut killed = Upstream::start("killed");
    let drained = Upstream::start("drained");
    let steady = Upstream::start("steady");
    let admin_port = free_port();
    let body = format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         monitors:\n  - {{ id: h, path: /health, interval: 1, timeout: 1 }}\n\
         pools:\n  - id: web\n    monitor: h\n    endpoints:\n{eps}\
         load_balancers:\n  - name: cookie.example\n    default_pools: [web]\n    session_affinity: cookie\n    session_affinity_attributes: {{ zero_downtime_failover: temporary, drain_duration: 2 }}\n\
         \x20 - name: header.example\n    default_pools: [web]\n    session_affinity: header\n    session_affinity_attributes: {{ headers: [x-user], zero_downtime_failover: temporary, drain_duration: 2 }}\n\
         \x20 - name: loop.example\n    default_pools: [back]\n",
        eps = endpoints(&[&killed, &drained, &steady])
    );
    // A TLS listener too, for the hostile crowd's silent-TLS and idle-HTTP/2 connections.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::common::ops::self_signed(dir.path());
    let (port, tls_port) = (free_port(), free_port());
    let head = head_with_tls(dir.path(), port, tls_port, &cert, &key);
    let limits = "limits:\n  request_header_timeout_seconds: 3\n  keepalive_timeout_seconds: 5\n  request_body_timeout_seconds: 3\n  send_timeout_seconds: 3\n";
    // An endpoint that leads back to tether through a relay: a loop no config check can see.
    let back = relay(SocketAddr::from(([127, 0, 0, 1], port)));
    let body = body.replace(
        "load_balancers:",
        &format!("  - id: back\n    endpoints:\n      - {{ name: back, address: \"{back}\" }}\nload_balancers:"),
    );
    let t = Tether::start_with(dir, port, &format!("{head}{limits}{body}"));
    let pid = t.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let rss_start = rss_kib(pid);

    // Clients: each keeps its own pin and checks that a pin to the untouched endpoint holds.
    let mut clients = Vec::new();
    for i in 0..12 {
        let (stop, tally, url) = (stop.clone(), tally.clone(), t.url("/"));
        clients.push(std::thread::spawn(move || {
            let c = client();
            let header = i % 2 == 1;
            let host = if header {
                "header.example"
            } else {
                "cookie.example"
            };
            let user = format!("user-{i}");
            let mut cookie: Option<String> = None;
            let mut home: Option<String> = None;
            while !stop.load(Relaxed) {
                let mut hs: Vec<(&str, &str)> = Vec::new();
                let cookie_header = cookie.as_ref().map(|c| format!("__cflb={c}"));
                if let Some(c) = &cookie_header {
                    hs.push(("cookie", c));
                }
                if header {
                    hs.push(("x-user", &user));
                }
                let mut req = c.get(&url).header("host", host);
                for (k, v) in &hs {
                    req = req.header(*k, *v);
                }
                tally.requests.fetch_add(1, Relaxed);
                match req.send() {
                    Err(e) => tally.error(format!(
                        "transport: {}",
                        if e.is_timeout() {
                            "timeout"
                        } else {
                            "connect/io"
                        }
                    )),
                    Ok(r) if !r.status().is_success() => {
                        tally.error(format!("status {}", r.status().as_u16()))
                    }
                    Ok(r) => {
                        let served = r
                            .headers()
                            .get("x-endpoint")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let minted = r.headers().get_all("set-cookie").iter().find_map(|v| {
                            v.to_str()
                                .ok()?
                                .strip_prefix("__cflb=")
                                .map(|s| s.split(';').next().unwrap_or("").to_string())
                        });
                        if let Some(m) = &minted {
                            if cookie.is_some() {
                                tally.repins.fetch_add(1, Relaxed);
                            }
                            cookie = Some(m.clone());
                        }
                        // The pin: for a cookie client, the endpoint that served the response
                        // that minted its cookie; for a header client, where its session began.
                        // `steady` is never killed or drained, so a pin to it must always hold.
                        let was_steady = home.as_deref() == Some("steady");
                        if minted.is_some() && !header {
                            if was_steady {
                                tally.broken_pins.fetch_add(1, Relaxed);
                            }
                            home = Some(served.clone());
                        } else if home.is_none() {
                            home = Some(served.clone());
                        } else if was_steady && served != "steady" {
                            tally.broken_pins.fetch_add(1, Relaxed);
                        }
                        let _ = r.bytes();
                    }
                }
            }
        }));
    }

    // Hostility: a few hundred connections that hold slots without finishing a request.
    let crowd = HostileMix::start(
        Targets {
            plain: t.addr(),
            tls_port,
            host: "cookie.example",
            loop_host: "loop.example",
        },
        40,
    );

    // Chaos: kill/restart one endpoint, drain/undrain another, reload the config.
    let admin = client();
    let started = Instant::now();
    let mut tick = 0u64;
    let mut rss_samples = Vec::new();
    let mut fd_samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        tick += 1;
        if tick.is_multiple_of(10) {
            rss_samples.push(rss_kib(pid));
            fd_samples.push(fd_count(pid));
        }
        match tick % 6 {
            1 => killed.stop(),
            3 => killed.restart(),
            _ => {}
        }
        match tick % 8 {
            2 => assert!(admin
                .post(format!(
                    "http://127.0.0.1:{admin_port}/pools/web/endpoints/drained/drain"
                ))
                .send()
                .unwrap()
                .status()
                .is_success()),
            6 => assert!(admin
                .post(format!(
                    "http://127.0.0.1:{admin_port}/pools/web/endpoints/drained/undrain"
                ))
                .send()
                .unwrap()
                .status()
                .is_success()),
            _ => {}
        }
        if tick.is_multiple_of(3) {
            signal(pid, "-HUP");
        }
    }
    stop.store(true, Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let hostile = crowd.finish();
    let rss_end = rss_kib(pid);
    let fds_end = fd_count(pid);
    let errors = tally.errors.lock().unwrap().clone();
    let error_total: u64 = errors.values().sum();
    println!(
        "soak: {seconds} s, {} requests, {error_total} errors {errors:?}",
        tally.requests.load(Relaxed)
    );
    println!(
        "soak: pins broken that should have held: {}",
        tally.broken_pins.load(Relaxed)
    );
    println!(
        "soak: re-pins (killed/drained endpoints): {}",
        tally.repins.load(Relaxed)
    );
    for k in &hostile {
        println!(
            "soak: hostile {:?}: {} opened, {} cut by tether",
            k.kind, k.opened, k.cut
        );
    }
    println!("soak: tether RSS {rss_start} KiB at start, {rss_end} KiB at end; every 10 s: {rss_samples:?}");
    println!("soak: tether open files every 10 s: {fd_samples:?}; {fds_end} at end");
    // After warm-up (allocator arenas, pools, session stores) RSS must stay flat.
    let warm = rss_samples.get(1).copied().unwrap_or(rss_start);
    println!(
        "soak: RSS growth after the first 20 s: {} KiB",
        rss_end.saturating_sub(warm)
    );
    assert_eq!(
        error_total,
        0,
        "client errors: {errors:?}\n{}",
        // The well-behaved clients' failed requests and what tether said around them.
        t.log()
            .lines()
            .filter(|l| l.contains("\"GET /\" 5")
                || l.contains("failover")
                || l.contains("WARN  tether"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(tally.broken_pins.load(Relaxed), 0);
    for k in &hostile {
        assert!(k.cut > 0, "tether never cut a {:?} connection", k.kind);
    }
    // The crowd's connections come and go in batches: what tether holds after each batch is cut
    // must not creep up. At the end the crowd is gone, so only the clients' and pools' remain.
    let fds_warm = fd_samples.get(1).copied().unwrap_or(0);
    assert!(
        fds_end <= fds_warm,
        "open files grew from {fds_warm} after warm-up to {fds_end} at the end"
    );
    // The hostile crowd's few hundred connections are part of the warm-up; after it, flat.
    assert!(
        rss_end < warm + 20 * 1024,
        "RSS grew from {warm} KiB after warm-up to {rss_end} KiB"
    );
}
