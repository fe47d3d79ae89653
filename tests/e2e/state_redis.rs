//! SPEC §5, several instances sharing one Redis (a real `redis-server` started here): header
//! sessions and admin drains are shared; Redis going away costs no request, and state is
//! shared again once it is back; instances may start before Redis.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::ops::*;
use crate::common::redis::Redis;
use crate::common::*;

/// One tether instance on the shared Redis at `redis_url`, with an admin port.
struct Instance {
    t: Tether,
    admin: u16,
}

impl Instance {
    fn start(redis_url: &str, ups: &[&Upstream]) -> Instance {
        Self::start_with_secret(redis_url, ups, SECRET)
    }

    /// An instance whose `cookie_secret` is `secret`.
    fn start_with_secret(redis_url: &str, ups: &[&Upstream], secret: &str) -> Instance {
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
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let yaml = format!("{}{body}", head(dir.path(), port).replace(SECRET, secret));
        Instance {
            t: Tether::start_with(dir, port, &yaml),
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
        endpoint_status(self.admin, "web", name)
    }

    fn reachable(&self) -> bool {
        self.status()["state"]["reachable"] == true
    }

    /// `tether_state_store_up` on `/metrics`.
    fn store_up(&self) -> bool {
        let metrics = admin(self.admin, "GET", "/metrics", None).body;
        metrics.lines().any(|l| l == "tether_state_store_up 1")
    }
}

/// The header-session keys in Redis.
fn session_keys(redis: &Redis) -> Vec<String> {
    redis.keys("test:session:*")
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
    let ups = three_upstreams();
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
    let ups = three_upstreams();
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
    let ups = three_upstreams();
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

/// The unkeyed hash main once used as the id of session `sid=<sid>`, as 32 hex digits.
fn unkeyed_id(sid: &str) -> String {
    let entries = [tether::config::SessionHeader::parse("cookie:sid").unwrap()];
    let cookie = format!("sid={sid}");
    let bytes = tether::affinity::header_key::session_bytes(
        &entries,
        &http::HeaderMap::new(),
        &[cookie.as_bytes()],
        false,
    )
    .unwrap();
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
}

#[test]
fn few_redis_keys_for_many_new_header_sessions() {
    let redis = Redis::start();
    let ups = three_upstreams();
    let ups: Vec<&Upstream> = ups.iter().collect();
    let a = Instance::start(&redis.url(), &ups);
    wait_for("connected", Duration::from_secs(5), || a.reachable());
    let c = client();
    for n in 0..2_000 {
        let cookie = format!("sid=flood-{n}");
        let r = get(&c, &a.t.url("/"), None, &[("cookie", &cookie)]);
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A re-pin is still written; once it is there, the flood's writes would be too.
    repin(&a, &[], "zed");
    wait_for("zed's re-pin in Redis", Duration::from_secs(3), || {
        !session_keys(&redis).is_empty()
    });
    let keys = redis.dbsize();
    let some: Vec<String> = redis.keys("*").into_iter().take(5).collect();
    assert!(keys < 20, "{keys} keys, such as {some:?}");
    assert!(a.store_up());
}

#[test]
fn repinned_session_is_written_and_returning_home_deletes_it() {
    let redis = Redis::start();
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let (a, b) = (
        Instance::start(&redis.url(), &ups),
        Instance::start(&redis.url(), &ups),
    );
    wait_for("connected", Duration::from_secs(5), || {
        a.reachable() && b.reachable()
    });
    let home = a.session("alice");
    let away = if home == "a" { "b" } else { "a" };
    assert!(
        session_keys(&redis).is_empty(),
        "at its first choice: not written"
    );
    // Sessions A placed at `home` and B has never seen, for B's first placements below.
    let strangers: Vec<String> = (0..40)
        .map(|n| format!("stranger-{n}"))
        .filter(|sid| a.session(sid) == home)
        .take(3)
        .collect();
    assert_eq!(strangers.len(), 3);
    assert!(session_keys(&redis).is_empty());

    a.post(&format!("/pools/web/endpoints/{home}/drain"));
    assert_eq!(a.session("alice"), away);
    wait_for("the re-pin written", Duration::from_secs(3), || {
        session_keys(&redis).len() == 1
    });
    // A first placement while the first choice cannot take it is written too.
    wait_for("the drain on B", Duration::from_secs(2), || {
        b.endpoint_status(&home)["admin_drained"] == true
    });
    for sid in &strangers {
        assert_eq!(b.session(sid), away);
    }
    wait_for("B's placements written", Duration::from_secs(3), || {
        session_keys(&redis).len() == 1 + strangers.len()
    });

    a.post(&format!("/pools/web/endpoints/{home}/undrain"));
    assert_eq!(a.session("alice"), away, "the re-pin outlives the undrain");
    a.post(&format!("/pools/web/endpoints/{away}/drain"));
    assert_eq!(a.session("alice"), home, "back at its first choice");
    wait_for("alice's key deleted", Duration::from_secs(3), || {
        session_keys(&redis).len() == strangers.len()
    });
    wait_for("the drain on B", Duration::from_secs(2), || {
        b.endpoint_status(away)["admin_drained"] == true
    });
    for sid in &strangers {
        assert_eq!(b.session(sid), home);
    }
    wait_for("every key deleted", Duration::from_secs(3), || {
        session_keys(&redis).is_empty()
    });
    a.post(&format!("/pools/web/endpoints/{away}/undrain"));
}

#[test]
fn garbage_drain_field_is_skipped() {
    let redis = Redis::start();
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let (a, b) = (
        Instance::start(&redis.url(), &ups),
        Instance::start(&redis.url(), &ups),
    );
    wait_for("connected", Duration::from_secs(5), || {
        a.reachable() && b.reachable()
    });
    let added = redis.command(&[
        "HSET",
        "test:drains",
        "garbage",
        "1",
        "web/a",
        "soon",
        "web/nosuch",
        "5",
    ]);
    assert_eq!(added.as_deref(), Some(":3"));
    // A real drain still propagates, and the store stays up.
    a.post("/pools/web/endpoints/b/drain");
    wait_for("the drain on B", Duration::from_secs(2), || {
        b.endpoint_status("b")["admin_drained"] == true
    });
    assert!(a.store_up() && b.store_up(), "{}", a.t.log());
    assert_eq!(a.endpoint_status("a")["admin_drained"], false);
    // A few more polls: each bad field is logged once, not per poll.
    std::thread::sleep(Duration::from_millis(600));
    assert!(a.store_up() && a.reachable(), "{}", a.t.log());
    let log = a.t.log();
    for field in ["garbage=1", "web/a=soon", "web/nosuch=5"] {
        let lines = log.matches(&format!("skipped the field {field} ")).count();
        assert_eq!(lines, 1, "{field}\n{log}");
    }

    // Not a hash at all: drains stay as they were, the store stays up, and a drain made
    // meanwhile is written once the key is usable again.
    redis.command(&["DEL", "test:drains"]).unwrap();
    redis
        .command(&["SET", "test:drains", "not a hash"])
        .unwrap();
    wait_for("the wrong type logged", Duration::from_secs(3), || {
        a.t.log().contains("is not a hash of drains")
    });
    a.post("/pools/web/endpoints/a/drain");
    wait_for("the failed write logged", Duration::from_secs(3), || {
        a.t.log().contains("holds another type")
    });
    assert!(a.store_up() && b.store_up(), "{}", a.t.log());
    assert_eq!(b.endpoint_status("b")["admin_drained"], true);
    redis.command(&["DEL", "test:drains"]).unwrap();
    wait_for(
        "the drain written after all",
        Duration::from_secs(3),
        || b.endpoint_status("a")["admin_drained"] == true,
    );
}

#[test]
fn future_drain_start_is_clamped() {
    let redis = Redis::start();
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let a = Instance::start(&redis.url(), &ups);
    wait_for("connected", Duration::from_secs(5), || a.reachable());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let future = (now + 10 * 86_400).to_string();
    redis
        .command(&["HSET", "test:drains", "web/b", &future])
        .unwrap();
    wait_for("the shared drain applied", Duration::from_secs(3), || {
        a.endpoint_status("b")["admin_drained"] == true
    });
    let e = a.endpoint_status("b");
    assert_eq!(e["state"], "draining", "{e}");
    let remaining = e["drain_remaining_seconds"].as_u64().unwrap();
    assert!(
        (290..=300).contains(&remaining),
        "the 300 s drain counts from now: {remaining}"
    );
    // Polls later, the countdown goes on from the start taken, not from each poll.
    std::thread::sleep(Duration::from_millis(1_100));
    let later = a.endpoint_status("b")["drain_remaining_seconds"]
        .as_u64()
        .unwrap();
    assert!(later < remaining, "{remaining} then {later}");
    assert!(a.t.log().contains("starts in the future"));
    assert!(a.store_up());
}

#[test]
fn malformed_session_value_is_a_miss() {
    let redis = Redis::start();
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let a = Instance::start(&redis.url(), &ups);
    let (mallory, _) = repin(&a, &[], "mallory");
    let (trudy, _) = repin(&a, &[], "trudy");
    wait_for("both re-pins in Redis", Duration::from_secs(3), || {
        session_keys(&redis).len() == 2
    });
    wait_for("the undrains in Redis", Duration::from_secs(3), || {
        redis.command(&["HLEN", "test:drains"]).as_deref() == Some(":0")
    });
    // Overwrite both with values tether never writes: a string that is no endpoint id, a hash.
    let keys = session_keys(&redis);
    redis
        .command(&["SET", &keys[0], "not-an-endpoint"])
        .unwrap();
    redis.command(&["DEL", &keys[1]]).unwrap();
    redis.command(&["HSET", &keys[1], "f", "v"]).unwrap();

    let b = Instance::start(&redis.url(), &ups);
    wait_for("connected", Duration::from_secs(5), || b.reachable());
    // A miss: each session goes where consistent hashing sends it.
    assert_eq!(b.session("mallory"), mallory);
    assert_eq!(b.session("trudy"), trudy);
    // Read again after the local copy's second: still a miss, not logged again.
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(b.session("mallory"), mallory);
    assert_eq!(b.session("trudy"), trudy);
    assert!(b.store_up() && b.reachable(), "{}", b.t.log());
    let log = b.t.log();
    assert!(!log.contains("unreachable"), "never an outage\n{log}");
    let metrics = admin(b.admin, "GET", "/metrics", None).body;
    assert!(
        metrics.contains("tether_state_store_errors_total 0"),
        "{metrics}"
    );
    assert_eq!(
        log.matches("does not hold an endpoint id").count(),
        2,
        "once per key\n{log}"
    );
}

#[test]
fn session_ids_are_keyed() {
    let redis = Redis::start();
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let a = Instance::start(&redis.url(), &ups);
    let other =
        Instance::start_with_secret(&redis.url(), &ups, "another secret, 32 bytes or more!");
    let (home, away) = repin(&a, &[&other], "alice");
    wait_for("alice's re-pin in Redis", Duration::from_secs(3), || {
        session_keys(&redis).len() == 1
    });
    let under_a = session_keys(&redis).remove(0);
    let id = under_a.rsplit(':').next().unwrap();
    assert_eq!(id.len(), 32, "{under_a}");
    assert_ne!(
        id,
        unkeyed_id("alice"),
        "the id is not a bare hash of the value"
    );

    // The drain behind A's re-pin may still reach the other instance after `repin` saw it
    // serving: once Redis holds no drain, two polls there settle it.
    wait_for("the undrain in Redis", Duration::from_secs(3), || {
        redis.command(&["HLEN", "test:drains"]).as_deref() == Some(":0")
    });
    std::thread::sleep(Duration::from_millis(600));
    // Under another secret alice is another session: A's re-pin means nothing there, and a
    // re-pin there gets its own key.
    assert_eq!(other.session("alice"), home);
    repin(&other, &[&a], "alice");
    wait_for("the other re-pin in Redis", Duration::from_secs(3), || {
        session_keys(&redis).len() == 2
    });
    let keys = session_keys(&redis);
    assert!(keys.contains(&under_a), "{keys:?}");
    assert_eq!(a.session("alice"), away, "A keeps its own");
}
