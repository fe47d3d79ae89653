//! SPEC §3.5 endpoint drain and §3.3 removed endpoints, end to end, through hot reloads.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

fn config(a: &Upstream, b: &Upstream, a_enabled: bool, drain: u64) -> String {
    format!(
        "pools:\n  - id: web\n    endpoints:\n\
         \x20     - {{ name: a, address: \"{}\", enabled: {a_enabled} }}\n\
         \x20     - {{ name: b, address: \"{}\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ drain_duration: {drain} }}\n",
        a.addr, b.addr
    )
}

/// Replaces the pools and balancers of `t`'s config with `body` and reloads (SIGHUP), waiting
/// until the reload is logged.
fn reload(t: &Tether, body: &str) {
    let yaml = std::fs::read_to_string(&t.config).unwrap();
    let head = &yaml[..yaml.find("pools:").unwrap()];
    std::fs::write(&t.config, format!("{head}{body}")).unwrap();
    let before = t.log().matches("reloaded").count();
    crate::common::ops::signal(t.pid(), "HUP");
    wait_for("the reload", LONG, || {
        t.log().matches("reloaded").count() > before
    });
}

#[test]
fn drain_keeps_sessions_for_drain_duration_then_repins() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let t = Tether::start(&config(&a, &b, true, 4));
    let cookie = cookie_pinned_to(&t, "a");
    let c = client();

    reload(&t, &config(&a, &b, false, 4));
    let began = Instant::now();
    let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
    assert_eq!(
        (r.status, r.endpoint()),
        (200, "a"),
        "a draining endpoint keeps its sessions"
    );
    assert!(r.set_cookies().is_empty());
    for _ in 0..10 {
        assert_eq!(
            get(&c, &t.url("/"), None, &[]).endpoint(),
            "b",
            "no new sessions"
        );
    }
    wait_for("the drain to be logged", LONG, || {
        t.log()
            .contains("web/a draining on *: no new sessions; its sessions stay for")
    });

    // A reload during the drain does not restart its clock: the drain began at the first one.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(began.elapsed()));
    reload(&t, &config(&a, &b, false, 4));

    let mut moved = None;
    wait_for("the session to be re-pinned", LONG, || {
        let r = get(&c, &t.url("/"), None, &[("cookie", &cookie)]);
        assert_eq!(r.status, 200);
        let done = r.endpoint() == "b";
        moved = done.then_some(r);
        done
    });
    let took = began.elapsed();
    // The drain clock counts whole seconds: it ends 3..4 s after it began; a clock restarted by
    // the second reload would end 5.5 s or later.
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(5),
        "re-pinned after {took:?}"
    );
    let token = moved.unwrap().cflb().expect("the re-pin sets a new cookie");
    let again = get(
        &c,
        &t.url("/"),
        None,
        &[("cookie", &format!("__cflb={token}"))],
    );
    assert_eq!(again.endpoint(), "b");
    wait_for("the drain's end to be logged", LONG, || {
        t.log()
            .contains("web/a drained on *: its sessions are re-pinned from now on")
    });
    assert_eq!(
        t.log().matches("web/a draining on *").count(),
        1,
        "logged once, across both reloads"
    );
}

#[test]
fn drain_duration_zero_repins_at_once() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let t = Tether::start(&config(&a, &b, true, 0));
    let cookie = cookie_pinned_to(&t, "a");
    reload(&t, &config(&a, &b, false, 0));
    let r = get(&client(), &t.url("/"), None, &[("cookie", &cookie)]);
    assert_eq!((r.status, r.endpoint()), (200, "b"));
    assert!(r.cflb().is_some(), "re-pinned with a new cookie");
}

#[test]
fn an_endpoint_removed_by_a_reload_is_repinned() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let t = Tether::start(&config(&a, &b, true, 60));
    let cookie = cookie_pinned_to(&t, "a");
    let without_a = format!(
        "pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n",
        endpoints(&[&b])
    );
    reload(&t, &without_a);
    let r = get(&client(), &t.url("/"), None, &[("cookie", &cookie)]);
    assert_eq!((r.status, r.endpoint()), (200, "b"));
    assert!(r.cflb().is_some(), "re-pinned with a new cookie");
}

#[test]
fn an_enabled_endpoint_takes_new_sessions_again() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let t = Tether::start(&config(&a, &b, false, 0));
    let c = client();
    for _ in 0..10 {
        assert_eq!(get(&c, &t.url("/"), None, &[]).endpoint(), "b");
    }
    reload(&t, &config(&a, &b, true, 0));
    wait_for("a new session on a", LONG, || {
        get(&c, &t.url("/"), None, &[]).endpoint() == "a"
    });
}
