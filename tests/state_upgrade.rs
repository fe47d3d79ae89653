//! SPEC §5, graceful upgrade: the process started with `--upgrade` starts with the old one's
//! admin drains (countdown included), header sessions and health verdicts, with either store,
//! and no request of a loop running through the upgrade fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ops::*;
use common::redis::Redis;
use common::*;

fn endpoint(admin_port: u16, name: &str) -> serde_json::Value {
    let status = admin(admin_port, "GET", "/status", None).json();
    status["pools"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap()
}

fn session(url: &str, sid: &str) -> String {
    let r = get(&client(), url, None, &[("cookie", &format!("sid={sid}"))]);
    assert_eq!(r.status, 200, "{r:?}");
    r.endpoint().to_string()
}

fn config(head: &str, admin_port: u16, state: &str, monitor: &str, ups: &str, dead: u16) -> String {
    format!(
        "{head}admin:\n  address: 127.0.0.1:{admin_port}\n{state}\
         monitors:\n  - {{ id: m, path: /health, {monitor} }}\n\
         pools:\n  - id: web\n    monitor: m\n    endpoints:\n{ups}\
         \x20     - {{ name: dead, address: \"127.0.0.1:{dead}\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: header\n\
         \x20   session_affinity_attributes: {{ headers: [\"cookie:sid\"], drain_duration: 0 }}\n\
         \x20 - name: drain.test\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ drain_duration: 300 }}\n"
    )
}

fn upgrade_keeps_state(state: &str) {
    let ups = [
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("d"),
    ];
    let names = ["a", "b", "d"];
    let ups_yaml = endpoints(&ups.iter().collect::<Vec<_>>());
    let dead = free_port();
    let admin_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let head = head(dir.path(), port).replace("grace_period_seconds: 0", "grace_period_seconds: 2");
    // The old process calls the dead endpoint unhealthy at its first check.
    let quick = "interval: 1, timeout: 1, consecutive_down: 1";
    let mut old = Tether::start_with(
        dir,
        port,
        &config(&head, admin_port, state, quick, &ups_yaml, dead),
    );
    let url = old.url("/");
    wait_for(
        "the dead endpoint found unhealthy",
        Duration::from_secs(10),
        || endpoint(admin_port, "dead")["healthy"] == false,
    );

    // Re-pin a header session away from its hashed endpoint, then drain a third endpoint.
    let hashed = session(&url, "alice");
    let post = |path: String| assert_eq!(admin(admin_port, "POST", &path, None).status, 200);
    post(format!("/pools/web/endpoints/{hashed}/drain"));
    let moved = session(&url, "alice");
    assert_ne!(moved, hashed);
    post(format!("/pools/web/endpoints/{hashed}/undrain"));
    let third = names
        .iter()
        .find(|n| **n != hashed && **n != moved)
        .unwrap();
    post(format!("/pools/web/endpoints/{third}/drain"));
    let before = endpoint(admin_port, third)["drain_remaining_seconds"]
        .as_u64()
        .unwrap();
    assert_eq!(session(&url, "alice"), moved);

    // The new process would need three failed checks a minute apart to find the dead endpoint
    // on its own: only the hand-over can tell it.
    let slow = "interval: 60, timeout: 1, consecutive_down: 3";
    std::fs::write(
        &old.config,
        config(&head, admin_port, state, slow, &ups_yaml, dead),
    )
    .unwrap();
    let pinned = RequestLoop::start(
        url.clone(),
        Some("sid=alice".into()),
        Some(moved.clone()),
        true,
        20_000,
    );
    let fresh = RequestLoop::start(url.clone(), None, None, true, 20_000);
    std::thread::sleep(Duration::from_millis(300));
    let new_log = old.dir.path().join("tether-new.log");
    let mut new = upgrade(&mut old, &new_log);
    std::thread::sleep(Duration::from_millis(300));
    let (pinned, fresh) = (pinned.finish(), fresh.finish());

    let drained = endpoint(admin_port, third);
    let dead_now = endpoint(admin_port, "dead");
    let now_on = session(&url, "alice");
    let _ = new.kill();
    let _ = new.wait();
    let logs = format!(
        "old:\n{}\nnew:\n{}",
        old.log(),
        std::fs::read_to_string(&new_log).unwrap_or_default()
    );
    assert!(
        pinned.failures.is_empty() && fresh.failures.is_empty(),
        "failed requests: {:?} {:?}\n{logs}",
        pinned.failures,
        fresh.failures
    );
    assert!(
        pinned.ok > 20 && fresh.ok > 20,
        "{} {}",
        pinned.ok,
        fresh.ok
    );
    assert!(logs.contains("took over the old process's state"), "{logs}");
    assert_eq!(
        now_on, moved,
        "the session stays on its new endpoint\n{logs}"
    );
    assert_eq!(drained["admin_drained"], true, "{drained}\n{logs}");
    assert_eq!(drained["state"], "draining", "{drained}");
    let after = drained["drain_remaining_seconds"].as_u64().unwrap();
    assert!(
        after < before && after + 60 > before,
        "the countdown goes on: {before} then {after}"
    );
    assert_eq!(dead_now["healthy"], false, "health verdict kept\n{logs}");
}

#[test]
fn upgrade_keeps_drains_sessions_and_health_with_the_embedded_store() {
    upgrade_keeps_state("");
}

#[test]
fn upgrade_keeps_drains_sessions_and_health_with_the_redis_store() {
    let redis = Redis::start();
    upgrade_keeps_state(&format!(
        "state:\n  store: redis\n  redis:\n    url: \"{}\"\n    timeout_ms: 500\n",
        redis.url()
    ));
}
