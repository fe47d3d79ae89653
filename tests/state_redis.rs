//! SPEC §5, several instances sharing one Redis (a real `redis-server` started here): header
//! sessions and admin drains are shared; Redis going away costs no request, and state is
//! shared again once it is back; instances may start before Redis.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ops::*;
use common::redis::Redis;
use common::*;

/// One tether instance on the shared Redis at `redis_url`, with an admin port.
struct Instance {
    t: Tether,
    admin: u16,
}

impl Instance {
    fn start(redis_url: &str, ups: &[&Upstream]) -> Instance {
        let admin_port = free_port();
        let body = format!(
            "admin:\n  address: 127.0.0.1:{admin_port}\n\
             state:\n  store: redis\n  redis:\n    url: \"{redis_url}\"\n    key_prefix: \"test:\"\n    timeout_ms: 500\n\
             pools:\n  - id: web\n    endpoints:\n{}\
             load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: header\n\
             \x20   session_affinity_attributes: {{ headers: [\"cookie:sid\"], drain_duration: 0 }}\n\
             \x20 - name: drain.test\n    default_pools: [web]\n    session_affinity: cookie\n\
             \x20   session_affinity_attributes: {{ drain_duration: 300 }}\n",
            endpoints(ups)
        );
        Instance {
            t: Tether::start(&body),
            admin: admin_port,
        }
    }

    /// The endpoint that answers session `sid` here.
    fn session(&self, sid: &str) -> String {
        let r = get(
            &client(),
            &self.t.url("/"),
            None,
            &[("cookie", &format!("sid={sid}"))],
        );
        assert_eq!(r.status, 200, "{r:?}\n{}", self.t.log());
        r.endpoint().to_string()
    }

    fn post(&self, path: &str) {
        let r = admin(self.admin, "POST", path, None);
        assert_eq!(r.status, 200, "{r:?}");
    }

    fn status(&self) -> serde_json::Value {
        admin(self.admin, "GET", "/status", None).json()
    }

    fn endpoint_status(&self, name: &str) -> serde_json::Value {
        self.status()["pools"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap()
    }

    fn reachable(&self) -> bool {
        self.status()["state"]["reachable"] == true
    }
}

/// Re-pins session `sid` on `on` away from the endpoint hashing gives it: drain that endpoint
/// (drain_duration 0 re-pins at once), then undrain it. Returns (hashed, re-pinned).
fn repin(on: &Instance, others: &[&Instance], sid: &str) -> (String, String) {
    let hashed = on.session(sid);
    on.post(&format!("/pools/web/endpoints/{hashed}/drain"));
    let moved = on.session(sid);
    assert_ne!(moved, hashed, "a drained endpoint's session is re-pinned");
    on.post(&format!("/pools/web/endpoints/{hashed}/undrain"));
    for i in std::iter::once(&on).chain(others) {
        wait_for("the undrain everywhere", Duration::from_secs(5), || {
            i.endpoint_status(&hashed)["state"] == "serving"
        });
    }
    assert_eq!(on.session(sid), moved, "the re-pin outlives the undrain");
    (hashed, moved)
}

#[test]
fn header_session_repinned_on_one_instance_is_honoured_by_the_others() {
    let redis = Redis::start();
    let ups = [
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("c"),
    ];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let (a, b, c) = (
        Instance::start(&redis.url(), &ups),
        Instance::start(&redis.url(), &ups),
        Instance::start(&redis.url(), &ups),
    );
    for sid in ["alice", "bob"] {
        let (hashed, moved) = repin(&a, &[&b, &c], sid);
        for other in [&b, &c] {
            wait_for("the re-pin honoured", Duration::from_secs(3), || {
                other.session(sid) == moved
            });
            assert_ne!(other.session(sid), hashed);
        }
    }
    let shown = a.status()["state"].clone();
    assert_eq!(shown["store"], "redis");
    assert_eq!(shown["reachable"], true);
}

#[test]
fn admin_drain_on_one_instance_applies_on_every_instance_within_a_second() {
    let redis = Redis::start();
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let (a, b, c) = (
        Instance::start(&redis.url(), &ups),
        Instance::start(&redis.url(), &ups),
        Instance::start(&redis.url(), &ups),
    );
    let drained = Instant::now();
    a.post("/pools/web/endpoints/b/drain");
    for other in [&b, &c] {
        wait_for(
            "the drain on the other instances",
            Duration::from_secs(2),
            || other.endpoint_status("b")["admin_drained"] == true,
        );
    }
    let took = drained.elapsed();
    let (on_a, on_b) = (a.endpoint_status("b"), b.endpoint_status("b"));
    assert_eq!(on_b["state"], "draining", "{on_b}");
    let (ra, rb) = (
        on_a["drain_remaining_seconds"].as_u64().unwrap(),
        on_b["drain_remaining_seconds"].as_u64().unwrap(),
    );
    assert!(
        ra.abs_diff(rb) <= 1,
        "one countdown everywhere: {ra} vs {rb}"
    );
    // No new session lands on the drained endpoint anywhere.
    for (i, inst) in [&a, &b, &c].iter().enumerate() {
        for n in 0..10 {
            assert_eq!(inst.session(&format!("s{i}-{n}")), "a");
        }
    }
    c.post("/pools/web/endpoints/b/undrain");
    for other in [&a, &b] {
        wait_for(
            "the undrain on the other instances",
            Duration::from_secs(2),
            || other.endpoint_status("b")["admin_drained"] == false,
        );
    }
    eprintln!("drain reached both other instances in {took:?}");
}

#[test]
fn redis_killed_under_load_costs_no_request_and_sessions_resume() {
    let mut redis = Redis::start();
    let ups = [
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("c"),
    ];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let (a, b) = (
        Instance::start(&redis.url(), &ups),
        Instance::start(&redis.url(), &ups),
    );
    let (_, moved) = repin(&a, &[&b], "carol");
    wait_for("B knows carol's re-pin", Duration::from_secs(3), || {
        b.session("carol") == moved
    });
    // Carol's loops insist on her re-pinned endpoint through the outage: each instance keeps
    // the pin it last knew. Dave is a new session: consistent hashing, the same everywhere.
    let loops: Vec<RequestLoop> = [&a, &b, &a, &b]
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let (sid, expect) = if i < 2 {
                ("carol", Some(moved.clone()))
            } else {
                ("dave", None)
            };
            RequestLoop::start(
                inst.t.url("/"),
                Some(format!("sid={sid}")),
                expect,
                i % 2 == 0,
                20_000,
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    redis.kill();
    for i in [&a, &b] {
        wait_for("the outage noticed", Duration::from_secs(5), || {
            !i.reachable()
        });
    }
    let metrics = admin(a.admin, "GET", "/metrics", None).body;
    assert!(metrics.contains("tether_state_store_up 0"), "{metrics}");
    std::thread::sleep(Duration::from_millis(500));
    redis.restart();
    for i in [&a, &b] {
        wait_for("Redis back", Duration::from_secs(10), || i.reachable());
    }
    std::thread::sleep(Duration::from_millis(300));
    let reports: Vec<LoopReport> = loops.into_iter().map(RequestLoop::finish).collect();
    for r in &reports {
        assert!(r.failures.is_empty(), "client errors: {:?}", r.failures);
        assert!(r.ok > 20, "{}", r.ok);
    }
    let log = a.t.log();
    assert_eq!(
        log.matches("unreachable").count(),
        1,
        "one line per outage start\n{log}"
    );
    assert_eq!(
        log.matches("reachable again").count(),
        1,
        "one line per outage end\n{log}"
    );
    let metrics = admin(a.admin, "GET", "/metrics", None).body;
    assert!(metrics.contains("tether_state_store_up 1"), "{metrics}");
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tether_state_store_errors_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 1);
    // Sessions resume: Redis came back empty, and carol's pin, which the instances still
    // know, is written back; a third instance started now finds it there.
    let c = Instance::start(&redis.url(), &ups);
    wait_for(
        "carol's pin written back to Redis",
        Duration::from_secs(3),
        || c.session("carol") == moved,
    );
    // And a re-pin made after the outage is shared again.
    let (_, erin) = repin(&b, &[&a, &c], "erin");
    wait_for(
        "the re-pin honoured after the outage",
        Duration::from_secs(3),
        || a.session("erin") == erin,
    );
}

#[test]
fn instances_start_in_any_order_even_before_redis() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let ups = [
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("c"),
    ];
    let ups: Vec<&Upstream> = ups.iter().collect();
    // A starts with no Redis at all: it serves (fail-open) and says the store is unreachable.
    let a = Instance::start(&url, &ups);
    assert!(!a.session("frank").is_empty());
    assert!(!a.reachable());
    let redis = Redis::start_on(port, None);
    wait_for(
        "A connects once Redis is up",
        Duration::from_secs(10),
        || a.reachable(),
    );
    let b = Instance::start(&redis.url(), &ups);
    let (_, moved) = repin(&b, &[&a], "grace");
    wait_for("B's re-pin honoured on A", Duration::from_secs(3), || {
        a.session("grace") == moved
    });
}

#[test]
fn redis_password_works_and_is_never_shown() {
    let password = "s3cret-redis-password";
    let redis = Redis::start_on(free_port(), Some(password));
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let (a, b) = (
        Instance::start(&redis.url(), &ups),
        Instance::start(&redis.url(), &ups),
    );
    wait_for("connected", Duration::from_secs(5), || {
        a.reachable() && b.reachable()
    });
    a.post("/pools/web/endpoints/b/drain");
    wait_for("the drain shared", Duration::from_secs(2), || {
        b.endpoint_status("b")["admin_drained"] == true
    });
    let status = admin(a.admin, "GET", "/status", None).body;
    assert!(
        status.contains(&format!("127.0.0.1:{}", redis.port)),
        "{status}"
    );
    // A wrong password: the store is unreachable, requests are served, the password unseen.
    let wrong = redis.url().replace(password, "wrong-password-xyz");
    let c = Instance::start(&wrong, &ups);
    assert!(!c.session("heidi").is_empty());
    wait_for("the failure logged", Duration::from_secs(5), || {
        c.t.log().contains("unreachable")
    });
    for (log, secret) in [(a.t.log(), password), (c.t.log(), "wrong-password-xyz")] {
        assert!(!log.contains(secret), "a password in the log:\n{log}");
    }
    assert!(!status.contains(password));
}

#[test]
fn rediss_url_shares_state_over_tls() {
    let redis = Redis::start_tls();
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let (a, b) = (
        Instance::start(&redis.url(), &ups),
        Instance::start(&redis.url(), &ups),
    );
    wait_for("connected over TLS", Duration::from_secs(10), || {
        a.reachable() && b.reachable()
    });
    a.post("/pools/web/endpoints/a/drain");
    wait_for("the drain shared over TLS", Duration::from_secs(2), || {
        b.endpoint_status("a")["admin_drained"] == true
    });
}
