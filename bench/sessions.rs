//! Header-session benchmark (issue 3): memory per session at one million sessions, and what a
//! header-session lookup costs next to a cookie pin, through the same `route()` the proxy runs.
//!
//! Run: `cargo run --release --example bench_sessions` (or `make bench-sessions`);
//! `--memory-only` prints the memory line alone (bench/memory.sh reads it).

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tether::affinity::sessions::SessionStore;
use tether::affinity::EndpointId;
use tether::balancer::{route, PinAction, RequestFacts, RuntimeState, Snapshot};
use tether::config::Config;

/// The allocator tether runs with, so the figure is what tether's RSS grows by.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SESSIONS: u64 = 1_000_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn memory_per_session() -> f64 {
    let before = rss_bytes();
    let store = SessionStore::new(Duration::from_secs(1800), SESSIONS);
    for i in 0..SESSIONS {
        let id = u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        store.pin(id, EndpointId(i % 4));
    }
    store.sync();
    // mimalloc gives the tables a growing store left behind back to the system after a short
    // delay, on a later allocation: what a running tether's RSS shows.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(20));
        black_box(vec![0u8; 1 << 20]);
    }
    let after = rss_bytes();
    assert!(
        store.count() >= SESSIONS * 99 / 100,
        "store holds {}",
        store.count()
    );
    let per = (after.saturating_sub(before)) as f64 / SESSIONS as f64;
    println!(
        "memory: {} sessions, RSS {:.1} MiB -> {:.1} MiB, {per:.0} bytes per session",
        store.count(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    per
}

const YAML: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
cookie_secret: "benchmark secret, thirty-two bytes or more"
pools:
  - id: web
    endpoints:
      - { name: a, address: "127.0.0.1:9001" }
      - { name: b, address: "127.0.0.1:9002" }
      - { name: c, address: "127.0.0.1:9003" }
      - { name: d, address: "127.0.0.1:9004" }
load_balancers:
  - name: cookie.example
    default_pools: [web]
    session_affinity: cookie
  - name: header.example
    default_pools: [web]
    session_affinity: header
    session_affinity_attributes: { headers: [x-user] }
"#;

/// Median ns per call of `f` over `rounds` rounds of `n` calls.
fn ns_per_op(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

fn lookup_costs() {
    let config = Config::from_yaml(YAML, "bench").expect("valid bench config");
    let now = tether::clock::unix_now();
    let snap = Snapshot::build(config, &RuntimeState::default(), now);
    let empty = http::HeaderMap::new();
    let ip = IpAddr::from([192, 0, 2, 1]);
    let facts = |host, cookies, headers| RequestFacts {
        host,
        client_ip: ip,
        cookies,
        headers,
        random: 7,
        tls: false,
    };

    // A valid cookie, replayed.
    let first = route(&snap, &facts("cookie.example", &[], &empty), now).expect("routes");
    let token = snap.keys.mint(
        &snap.balancers[0].name,
        snap.endpoint(first.target).id,
        now + 3600,
    );
    let cookie = format!("__cflb={token}");
    let cookies = [cookie.as_bytes()];
    let cookie_ns = ns_per_op(200_000, |_| {
        black_box(route(&snap, &facts("cookie.example", &cookies, &empty), now).ok());
    });

    // 10,000 header sessions that already exist, looked up round-robin.
    let users: Vec<http::HeaderMap> = (0..10_000)
        .map(|i| {
            let mut h = http::HeaderMap::new();
            h.insert("x-user", format!("user-{i}").parse().expect("header value"));
            h
        })
        .collect();
    for h in &users {
        let d = route(&snap, &facts("header.example", &[], h), now).expect("routes");
        if let PinAction::Remember { session } = d.pin {
            let store = snap.balancers[d.balancer]
                .sessions
                .as_ref()
                .expect("header store");
            store.pin(session, snap.endpoint(d.target).id);
        }
    }
    let header_ns = ns_per_op(200_000, |i| {
        let h = &users[i as usize % users.len()];
        black_box(route(&snap, &facts("header.example", &[], h), now).ok());
    });
    println!("route() with a valid __cflb cookie:        {cookie_ns:>7.0} ns/request");
    println!("route() with an existing header session:   {header_ns:>7.0} ns/request");
    println!(
        "header session / cookie pin:               {:>7.2}x",
        header_ns / cookie_ns
    );
}

fn main() {
    if std::env::args().any(|a| a == "--memory-only") {
        memory_per_session();
        return;
    }
    let build = if cfg!(debug_assertions) {
        "debug build: timings mean little"
    } else {
        "release build"
    };
    println!("tether header-session benchmark ({build})");
    // Memory first: the lookup benchmark's own stores would otherwise leave pages to reuse.
    memory_per_session();
    lookup_costs();
}
