//! Criterion micro-benchmarks of the routing core, in ns per request: `route()` for a replayed
//! `__cflb` cookie (base64 decode, HMAC-SHA256 verify, pin lookup) at 4, 64 and 1,024 endpoints,
//! a first visit (pick and mint), the token alone, and the `Cookie` header scan.
//!
//! Run: `cargo bench --bench route` (or `make bench-route`).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};

use tether::affinity::cookies::cflb_values;
use tether::balancer::{route, RequestFacts, RuntimeState, Snapshot};
use tether::config::Config;

fn snapshot(endpoints: usize, affinity: &str) -> Snapshot {
    let mut y = String::from(
        "listeners: [{ address: \"127.0.0.1:8080\" }]\n\
         cookie_secret: \"benchmark secret, thirty-two bytes or more\"\n\
         pools:\n  - id: web\n    origin_steering: { policy: random }\n    endpoints:\n",
    );
    for i in 0..endpoints {
        y.push_str(&format!(
            "      - {{ name: e{i}, address: \"127.0.0.1:{}\" }}\n",
            10_000 + i
        ));
    }
    y.push_str(&format!(
        "load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: {affinity}\n"
    ));
    let config = Config::from_yaml(&y, "bench").expect("valid bench config");
    Snapshot::build(config, &RuntimeState::default(), 0)
}

/// A request to the benchmark's balancer with these `Cookie` header values.
fn facts<'a>(cookies: &'a [&'a [u8]], headers: &'a http::HeaderMap) -> RequestFacts<'a> {
    RequestFacts {
        host: "shop.example",
        client_ip: IpAddr::from([192, 0, 2, 1]),
        cookies,
        headers,
        random: 7,
        tls: false,
    }
}

fn routing(c: &mut Criterion) {
    let now = tether::clock::unix_now();
    let empty = http::HeaderMap::new();

    for n in [4, 64, 1024] {
        let snap = snapshot(n, "cookie");
        let first = route(&snap, &facts(&[], &empty), now).expect("routes");
        let token = snap.keys.mint(
            &snap.balancers[0].name,
            snap.endpoint(first.target).id,
            now + 3600,
        );
        let cookie = format!("session=abc123; __cflb={token}; theme=dark");
        let cookies = [cookie.as_bytes()];
        c.bench_function(&format!("route/cookie_replay/{n}_endpoints"), |b| {
            b.iter(|| route(&snap, black_box(&facts(&cookies, &empty)), now))
        });
        c.bench_function(&format!("route/first_visit_pick/{n}_endpoints"), |b| {
            b.iter(|| route(&snap, black_box(&facts(&[], &empty)), now))
        });
    }

    let snap = snapshot(4, "cookie");
    let name = snap.balancers[0].name.clone();
    let endpoint = snap
        .endpoint(
            route(&snap, &facts(&[], &empty), now)
                .expect("routes")
                .target,
        )
        .id;
    let token = snap.keys.mint(&name, endpoint, now + 3600);
    c.bench_function("token/verify", |b| {
        b.iter(|| snap.keys.verify(&name, black_box(&token), now))
    });
    c.bench_function("token/mint", |b| {
        b.iter(|| snap.keys.mint(&name, black_box(endpoint), now + 3600))
    });
    let header = format!("session=abc123; __cflb={token}; theme=dark");
    let headers = [header.as_bytes()];
    c.bench_function("cookie/find_cflb", |b| {
        b.iter(|| cflb_values(black_box(&headers)).next())
    });
}

criterion_group!(benches, routing);
criterion_main!(benches);
