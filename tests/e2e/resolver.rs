//! SPEC §3.10 origins by name: a DNS server started by the test on loopback answers for
//! `app.test`, and real upstreams listen on 127.0.0.2 and 127.0.0.3 on one port. tether asks
//! that server itself (`resolver.nameservers`) and follows its answers while it runs.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::common::dns::DnsServer;
use crate::common::ops::{admin, endpoint_status};
use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

/// A port free on both 127.0.0.2 and 127.0.0.3.
fn port_on_both() -> u16 {
    loop {
        let port = free_port();
        let free = |ip: &str| TcpListener::bind((ip, port)).is_ok();
        if free("127.0.0.2") && free("127.0.0.3") {
            return port;
        }
    }
}

fn on(name: &str, ip: &str, port: u16) -> Upstream {
    Upstream::start_on(name, SocketAddr::new(ip.parse().unwrap(), port))
}

/// tether with an admin listener, asking `dns` for names, one pool `web` (checked by a `tcp`
/// monitor when `monitored`) with the endpoint `app` at `app.test:port`, cookie affinity and
/// the given failover mode.
fn start(dns: &DnsServer, port: u16, failover: &str, monitored: bool) -> (Tether, u16) {
    start_every(dns, port, failover, monitored, 30)
}

/// As [`start`], with `resolver.interval_seconds: interval`.
fn start_every(
    dns: &DnsServer,
    port: u16,
    failover: &str,
    monitored: bool,
    interval: u64,
) -> (Tether, u16) {
    let admin_port = free_port();
    let monitor = if monitored {
        "monitors: [{ id: m, type: tcp, interval: 1, timeout: 1 }]\n"
    } else {
        ""
    };
    let pool_monitor = if monitored { "    monitor: m\n" } else { "" };
    let body = format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         resolver:\n  nameservers: [\"{}\"]\n  interval_seconds: {interval}\n{monitor}\
         pools:\n  - id: web\n{pool_monitor}    endpoints:\n      - {{ name: app, address: \"app.test:{port}\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ zero_downtime_failover: {failover} }}\n",
        dns.addr
    );
    let t = Tether::start(&body);
    wait_for("the admin listener", LONG, || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    (t, admin_port)
}

/// The endpoint's current addresses as `/status` shows them.
fn addresses(admin_port: u16) -> Vec<String> {
    let e = endpoint_status(admin_port, "web", "app");
    e["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn traffic_follows_a_dns_change_within_the_ttl_and_keeps_the_cookie() {
    let port = port_on_both();
    let (two, three) = (on("two", "127.0.0.2", port), on("three", "127.0.0.3", port));
    let dns = DnsServer::start(1);
    dns.set("app.test", &["127.0.0.2"]);
    let (t, admin_port) = start(&dns, port, "none", false);
    let c = client();

    let first = get(&c, &t.url("/"), None, &[]);
    assert_eq!(
        (first.status, first.endpoint()),
        (200, "two"),
        "{}",
        t.log()
    );
    let cookie = format!("__cflb={}", first.cflb().expect("a pin is minted"));
    let e = endpoint_status(admin_port, "web", "app");
    assert_eq!(e["address"], format!("app.test:{port}"));
    assert_eq!(addresses(admin_port), [format!("127.0.0.2:{port}")]);
    assert!(e["resolved_at"].as_u64().unwrap() > 1_700_000_000, "{e}");

    let asked = dns.queries();
    assert!(asked >= 1, "tether asks the configured server itself");
    dns.set("app.test", &["127.0.0.3"]);
    let changed = std::time::Instant::now();
    wait_for(
        "traffic on the new address",
        Duration::from_secs(10),
        || {
            let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(r.set_cookies().is_empty(), "the pin is kept, not re-minted");
            r.endpoint() == "three"
        },
    );
    // TTL 1 s, looked up again when it runs out: well within a few seconds, no reload.
    assert!(
        changed.elapsed() < Duration::from_secs(5),
        "{:?}",
        changed.elapsed()
    );
    let before = two.request_count();
    for _ in 0..20 {
        let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
        assert_eq!(
            (r.status, r.endpoint()),
            (200, "three"),
            "no pooled connection to the old address"
        );
        assert!(r.set_cookies().is_empty());
    }
    assert_eq!(two.request_count(), before);
    assert!(three.request_count() >= 20);
    assert_eq!(addresses(admin_port), [format!("127.0.0.3:{port}")]);
    let page = admin(admin_port, "GET", "/", None).body;
    assert!(
        page.contains(&format!(
            "app.test:{port} → 127.0.0.3:{port} <span class=muted>(resolved 20"
        )),
        "{page}"
    );
    let metrics = admin(admin_port, "GET", "/metrics", None).body;
    assert!(
        metrics.contains("tether_dns_lookups_total{result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        t.log().contains(&format!(
            "web/app: app.test:{port} now resolves to 127.0.0.3:{port}"
        )),
        "{}",
        t.log()
    );
}

#[test]
fn the_last_address_keeps_serving_when_dns_stops_answering() {
    let port = port_on_both();
    let _two = on("two", "127.0.0.2", port);
    let mut dns = DnsServer::start(1);
    dns.set("app.test", &["127.0.0.2"]);
    // Asked again every second while it fails, so one outage is several failed lookups.
    let (t, admin_port) = start_every(&dns, port, "none", false, 1);
    let c = client();
    assert_eq!(get(&c, &t.url("/"), None, &[]).endpoint(), "two");

    dns.stop();
    let failed = || {
        let metrics = admin(admin_port, "GET", "/metrics", None).body;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("tether_dns_lookups_total{result=\"failed\"} "))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap())
    };
    let deadline = std::time::Instant::now() + LONG;
    while failed() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no failed lookups:\n{}",
            t.log()
        );
        for _ in 0..5 {
            let r = get(&c, &t.url("/"), None, &[]);
            assert_eq!((r.status, r.endpoint()), (200, "two"), "{}", r.body);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..20 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!((r.status, r.endpoint()), (200, "two"), "{}", r.body);
    }
    assert_eq!(addresses(admin_port), [format!("127.0.0.2:{port}")]);
    // Logged once per outage, not once per failed lookup.
    let log = t.log();
    assert_eq!(
        log.matches("keeping its last addresses").count(),
        1,
        "{log}"
    );
}

#[test]
fn the_next_address_of_a_name_is_tried_before_a_failover() {
    let port = port_on_both();
    // Nothing listens on 127.0.0.2: connections there are refused.
    let three = on("three", "127.0.0.3", port);
    let dns = DnsServer::start(30);
    dns.set("app.test", &["127.0.0.2", "127.0.0.3"]);
    // Monitored: the check, too, passes on the second address rather than failing on the first.
    let (t, admin_port) = start(&dns, port, "none", true);
    wait_for("the first check", LONG, || {
        endpoint_status(admin_port, "web", "app")["health_reason"].is_string()
    });
    let e = endpoint_status(admin_port, "web", "app");
    assert_eq!(e["healthy"], true, "{e}");
    assert_eq!(
        addresses(admin_port),
        [format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")]
    );
    let c = client();
    for _ in 0..10 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!((r.status, r.endpoint()), (200, "three"), "{}", t.log());
    }
    assert_eq!(three.request_count(), 10);
    let log = t.log();
    assert!(log.contains(&format!("web/app: 127.0.0.2:{port} unreachable (ConnectRefused); trying its next address 127.0.0.3:{port}")), "{log}");
    let metrics = admin(admin_port, "GET", "/metrics", None).body;
    assert!(!metrics.contains("tether_failovers_total{"), "{metrics}");
}
