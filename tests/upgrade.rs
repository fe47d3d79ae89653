//! SPEC §1 graceful upgrade, end to end: a new process started with `--upgrade` takes the
//! listening sockets over when the old one gets SIGQUIT; under a request loop nothing is lost,
//! the old process exits, and the new one answers on the same ports (admin included).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ops::*;
use common::*;

#[test]
fn graceful_upgrade_under_load_loses_no_request() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let admin_port = free_port();
    // The old process lets in-flight requests finish for grace_period_seconds after it stops
    // accepting; Pingora then drops whatever is left, so it must not be 0 here.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let head = head(dir.path(), port).replace("grace_period_seconds: 0", "grace_period_seconds: 2");
    let mut old = Tether::start_with(dir, port, &format!(
        "{head}admin:\n  address: 127.0.0.1:{admin_port}\n\
         pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n",
        endpoints(&[&ups[0], &ups[1]])
    ));
    let (cookie, home) = pin(&old.url("/"));
    // Requests on new connections (what accept() must not drop), on a kept-alive connection
    // (closed by the old process when it drains), and of one pinned session.
    let fresh = RequestLoop::start(old.url("/"), None, None, true, 20_000);
    let keepalive = RequestLoop::start(old.url("/"), None, None, false, 20_000);
    let pinned = RequestLoop::start(old.url("/"), Some(cookie), Some(home), true, 20_000);
    std::thread::sleep(Duration::from_millis(300));

    let new_log = old.dir.path().join("tether-new.log");
    let quit = Instant::now();
    let mut new = upgrade(&mut old, &new_log);
    let handover = quit.elapsed();
    // Keep the loops going on the new process alone for a while.
    std::thread::sleep(Duration::from_millis(500));
    let (fresh, pinned) = (fresh.finish(), pinned.finish());
    let keepalive = keepalive.finish();

    let new_alive = new.try_wait().unwrap().is_none();
    let answers = get(&client(), &old.url("/"), None, &[]).status;
    let admin_answers = admin(admin_port, "GET", "/status", None).status;
    let _ = new.kill();
    let _ = new.wait();
    let logs = format!(
        "old:\n{}\nnew:\n{}",
        old.log(),
        std::fs::read_to_string(&new_log).unwrap_or_default()
    );
    assert!(new_alive, "the new process runs\n{logs}");
    assert!(
        count_in(&new_log, "INFO  access") > 0,
        "the new process served part of the loop\n{logs}"
    );
    assert!(
        fresh.failures.is_empty() && pinned.failures.is_empty() && keepalive.failures.is_empty(),
        "lost requests: {:?} {:?} {:?}\n{logs}",
        fresh.failures,
        pinned.failures,
        keepalive.failures
    );
    assert!(
        fresh.ok > 50 && pinned.ok > 50 && keepalive.ok > 50,
        "{} {} {}",
        fresh.ok,
        pinned.ok,
        keepalive.ok
    );
    assert_eq!(answers, 200, "the new process answers on the port");
    assert_eq!(admin_answers, 200, "and on the admin port");
    assert!(
        handover < Duration::from_secs(30),
        "old process took {handover:?}"
    );
}

#[test]
fn upgrade_binds_added_listeners_and_closes_removed_ones() {
    let a = Upstream::start("a");
    let (kept, removed, added) = (free_port(), free_port(), free_port());
    let listeners = |ports: [u16; 2]| {
        format!(
            "listeners:\n  - address: 127.0.0.1:{}\n  - address: 127.0.0.1:{}\n",
            ports[0], ports[1]
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let base = head(dir.path(), kept);
    let (server, rest) = base.split_once("listeners:").unwrap();
    let rest = rest.split_once("cookie_secret:").unwrap().1;
    let body = format!(
        "cookie_secret:{rest}pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        endpoints(&[&a])
    );
    let mut old = Tether::start_with(
        dir,
        kept,
        &format!("{server}{}{body}", listeners([kept, removed])),
    );
    assert_eq!(
        get(
            &client(),
            &format!("http://127.0.0.1:{removed}/"),
            None,
            &[]
        )
        .status,
        200
    );
    std::fs::write(
        &old.config,
        format!("{server}{}{body}", listeners([kept, added])),
    )
    .unwrap();
    let new_log = old.dir.path().join("tether-new.log");
    let mut new = upgrade(&mut old, &new_log);
    let c = client();
    let on = |port: u16| {
        c.get(format!("http://127.0.0.1:{port}/"))
            .timeout(Duration::from_secs(2))
            .send()
            .map(|r| r.status().as_u16())
    };
    let (k, ad) = (on(kept), on(added));
    // An inherited socket nobody serves would still complete TCP handshakes (a black hole).
    let rm = std::net::TcpStream::connect(("127.0.0.1", removed));
    let _ = new.kill();
    let _ = new.wait();
    let log = std::fs::read_to_string(&new_log).unwrap_or_default();
    assert_eq!(k.ok(), Some(200), "{log}");
    assert_eq!(ad.ok(), Some(200), "{log}");
    assert!(
        rm.is_err(),
        "a removed listener is closed, not left open unserved: {rm:?}\n{log}"
    );
}

/// True while a process with this pid exists (`kill -0`).
fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Daemons this test started, stopped (SIGINT, by pid) when it ends, also on a panic.
struct Daemons(Vec<u32>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for &p in &self.0 {
            if alive(p) {
                signal(p, "INT");
            }
        }
    }
}

/// The pid in a pid file, once the daemon has written it.
fn read_pid(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn daemon_upgrade_command_returns_at_once_and_takes_over() {
    let a = Upstream::start("a");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("tether.yaml");
    let yaml = format!(
        "{}pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        head(dir.path(), port).replace("grace_period_seconds: 0", "grace_period_seconds: 2"),
        endpoints(&[&a])
    );
    std::fs::write(&config, yaml).unwrap();
    let pid_file = dir.path().join("tether.pid");
    let url = format!("http://127.0.0.1:{port}/");
    let daemon = |log: &str, extra: &[&str]| {
        let started = Instant::now();
        let status = spawn_tether(&config, &dir.path().join(log), extra)
            .wait()
            .unwrap();
        (status.success(), started.elapsed())
    };

    let (ok, _) = daemon("old.log", &["--daemon"]);
    assert!(ok);
    wait_for("the daemon's pid file", Duration::from_secs(20), || {
        read_pid(&pid_file).is_some()
    });
    let old = read_pid(&pid_file).unwrap();
    let mut daemons = Daemons(vec![old]);
    wait_for("the daemon to answer", Duration::from_secs(20), || {
        client().get(&url).send().is_ok()
    });
    let requests = RequestLoop::start(url.clone(), None, None, true, 20_000);

    // The operator's steps: remember the old pid, start the new daemon, SIGQUIT the old one.
    let (ok, took) = daemon("new.log", &["--upgrade", "--daemon"]);
    // The new daemon moves the old pid file to tether.pid.old and writes its own.
    wait_for("the new daemon's pid file", Duration::from_secs(20), || {
        read_pid(&pid_file).is_some_and(|p| p != old)
    });
    let new = read_pid(&pid_file).unwrap();
    daemons.0.push(new);
    assert!(
        ok && took < Duration::from_secs(3),
        "`--upgrade --daemon` must return at once (ok {ok}, took {took:?})"
    );
    signal(old, "QUIT");
    let gone = Instant::now() + Duration::from_secs(60);
    while alive(old) && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    let old_gone = !alive(old);
    std::thread::sleep(Duration::from_millis(300));
    let report = requests.finish();
    let answers = get(&client(), &url, None, &[]).status;
    let new_alive = alive(new);
    assert!(old_gone, "the old daemon exited");
    assert!(
        new_alive && new != old,
        "a new daemon runs ({old} -> {new})"
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.ok > 50, "{}", report.ok);
    assert_eq!(answers, 200);
}
