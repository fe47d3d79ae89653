//! A sticky failover after a connect timeout re-pins with `Max-Age` equal to the TTL: the
//! cookie's lifetime is counted from the one clock reading of the request, not from the moment
//! the failover was decided seconds later.

#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::common::*;

/// Binds `addr` and fills its accept queue, so that a further connect gets no answer at all
/// and times out (a listener that accepts nothing). The returned sockets keep it so.
fn blackhole(addr: std::net::SocketAddr) -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind(addr).unwrap();
    let mut queued = Vec::new();
    // Linux queues backlog + 1 connections (std asks for 128); then SYNs are dropped.
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        queued.push(s);
        assert!(queued.len() < 4096, "the accept queue never filled");
    }
    (listener, queued)
}

fn max_age(set_cookie: &str) -> u64 {
    set_cookie
        .split(';')
        .find_map(|a| a.trim().strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("no Max-Age in {set_cookie}"))
        .parse()
        .unwrap()
}

#[test]
fn sticky_failover_after_a_connect_timeout_sets_max_age_to_the_ttl() {
    let (mut a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body = format!(
        "pools:\n  - id: web\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_ttl: 1800\n\
         \x20   session_affinity_attributes: {{ zero_downtime_failover: sticky }}\n",
        endpoints(&[&a, &b])
    );
    let t = Tether::start(&body);
    let c = client();
    let cookie = loop {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!(max_age(&r.set_cookies()[0]), 1800);
        if r.endpoint() == "a" {
            break format!("__cflb={}", r.cflb().unwrap());
        }
    };
    a.stop();
    let _hole = blackhole(a.addr);
    // tether gives up on the connect after its 5 s timeout and fails over to b.
    let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
    assert_eq!((r.status, r.endpoint()), (200, "b"));
    let repin = r.set_cookies();
    assert_eq!(repin.len(), 1, "sticky re-pins: {repin:?}");
    assert_eq!(max_age(&repin[0]), 1800, "{}", repin[0]);
}
