//! SPEC §1 graceful upgrade, end to end: a new process started with `--upgrade` takes the
//! listening sockets over when the old one gets SIGQUIT; under a request loop nothing is lost,
//! the old process exits, and the new one answers on the same ports (admin included).
//! And the start it relies on is truthful: `listening on` means bound, an address that cannot be
//! bound (fresh, `--daemon` or upgrade) ends the start at once with one line, and a listener lost
//! at run time ends the process.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::ops::*;
use crate::common::*;

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

/// A config with the proxy on `port` and the admin API on `admin_port`, written into `dir`.
fn start_config(dir: &std::path::Path, port: u16, admin_port: u16) -> std::path::PathBuf {
    let config = dir.join("tether.yaml");
    let yaml = format!(
        "{}admin:\n  address: 127.0.0.1:{admin_port}\n\
         pools:\n  - id: web\n    endpoints:\n      - {{ name: a, address: \"127.0.0.1:9\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        head(dir, port)
    );
    std::fs::write(&config, yaml).unwrap();
    config
}

/// Starts tether with one of its addresses already taken: the start must fail fast and say why.
fn start_on_a_busy_address(busy_admin: bool) {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let free = free_port();
    let (port, admin_port) = if busy_admin {
        (free, busy)
    } else {
        (busy, free)
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tether.log");
    let config = start_config(dir.path(), port, admin_port);
    let mut t = Running(spawn_tether(&config, &log, &[]));
    let started = Instant::now();
    let status = exit_within(&mut t.0, Duration::from_secs(10));
    let took = started.elapsed();
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?} after {took:?}:\n{out}"
    );
    let named: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(&busy.to_string()))
        .collect();
    assert_eq!(
        named,
        [format!(
            "tether: cannot listen on 127.0.0.1:{busy}: Address already in use (os error 98)"
        )],
        "one line naming the address and the reason:\n{out}"
    );
    assert!(
        !out.contains("listening on") && !out.contains("admin API on"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "no panic, no backtrace:\n{out}");
    // Nothing left running: the other address, bound first, is closed again.
    assert!(std::net::TcpStream::connect(("127.0.0.1", free)).is_err());
}

#[test]
fn port_in_use_exits_nonzero_naming_the_address() {
    start_on_a_busy_address(false);
}

#[test]
fn admin_port_in_use_exits_nonzero_naming_the_address() {
    start_on_a_busy_address(true);
}

#[test]
fn daemon_start_on_a_port_in_use_fails_in_the_foreground() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let (log, pid_file) = (dir.path().join("tether.log"), dir.path().join("tether.pid"));
    let config = start_config(dir.path(), busy, free_port());
    let mut foreground = Running(spawn_tether(&config, &log, &["--daemon"]));
    let status = exit_within(&mut foreground.0, Duration::from_secs(10));
    if status.is_some_and(|s| s.success()) {
        // It daemonized (the bug): give the daemon time to write its pid, to stop it below.
        let until = Instant::now() + Duration::from_secs(2);
        while !pid_file.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _daemons = Daemons(read_pid(&pid_file).into_iter().collect());
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}:\n{out}");
    assert!(
        out.contains(&format!("tether: cannot listen on 127.0.0.1:{busy}: ")),
        "{out}"
    );
    assert!(!pid_file.exists(), "no daemon was left:\n{out}");
}

#[test]
fn listening_on_is_logged_only_once_the_address_is_bound() {
    let (port, admin_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = start_config(dir.path(), port, admin_port);
    let yaml = std::fs::read_to_string(&config).unwrap();
    let log = dir.path().join("tether.log");
    let old = Tether::start_with(dir, port, &yaml);
    let admin_line = format!("admin API on http://127.0.0.1:{admin_port}");
    wait_for("the announcements", Duration::from_secs(20), || {
        count_in(&log, &admin_line) == 1
    });
    let proxy_line = format!("listening on 127.0.0.1:{port}\n");
    assert_eq!(count_in(&log, &proxy_line), 1, "{}", old.log());

    // An upgrade's new process has nothing bound until the old one hands its sockets over.
    let new_log = old.dir.path().join("tether-new.log");
    let _new = Running(spawn_tether(&old.config, &new_log, &["--upgrade"]));
    let sock = old.dir.path().join("upgrade.sock");
    wait_for(
        "the new process's upgrade socket",
        Duration::from_secs(20),
        || sock.exists(),
    );
    let before = std::fs::read_to_string(&new_log).unwrap();
    assert!(
        !before.contains("listening on") && !before.contains("admin API on"),
        "announced before the sockets arrived:\n{before}"
    );
    signal(old.pid(), "QUIT");
    wait_for(
        "the new process's announcements",
        Duration::from_secs(20),
        || count_in(&new_log, &proxy_line) == 1 && count_in(&new_log, &admin_line) == 1,
    );
}

#[test]
fn upgrade_to_a_busy_new_address_exits_nonzero_naming_it() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "{}pools:\n  - id: web\n    endpoints:\n      - {{ name: a, address: \"127.0.0.1:9\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        head(dir.path(), port)
    );
    let old = Tether::start_with(dir, port, &yaml);
    let added = format!("  - address: 127.0.0.1:{busy}\ncookie_secret:");
    std::fs::write(&old.config, yaml.replace("cookie_secret:", &added)).unwrap();
    let new_log = old.dir.path().join("tether-new.log");
    let mut new = Running(spawn_tether(&old.config, &new_log, &["--upgrade"]));
    let sock = old.dir.path().join("upgrade.sock");
    wait_for(
        "the new process's upgrade socket",
        Duration::from_secs(20),
        || sock.exists(),
    );
    signal(old.pid(), "QUIT");
    let status = exit_within(&mut new.0, Duration::from_secs(10));
    let out = std::fs::read_to_string(&new_log).unwrap();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}:\n{out}");
    assert!(
        out.contains(&format!(
            "cannot listen on 127.0.0.1:{busy}: Address already in use"
        )),
        "{out}"
    );
    assert!(
        !out.contains(&format!("listening on 127.0.0.1:{busy}")),
        "{out}"
    );
}

#[test]
fn a_listener_lost_at_run_time_ends_the_process() {
    let (port, admin_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tether.log");
    let config = start_config(dir.path(), port, admin_port);
    let mut t = Running(spawn_tether(&config, &log, &[]));
    wait_for("the announcement", Duration::from_secs(20), || {
        count_in(&log, "listening on") == 1
    });
    // Served, not only bound: the socket is in Pingora's accept loop.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_for("the proxy to answer", Duration::from_secs(20), || {
        raw_status(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == Some(502)
    });
    shut_down_listener(t.0.id(), port);
    let lost = Instant::now();
    let status = exit_within(&mut t.0, Duration::from_secs(5));
    let took = lost.elapsed();
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?} after {took:?}:\n{out}"
    );
    assert!(
        out.contains(&format!("listener 127.0.0.1:{port} lost")),
        "{out}"
    );
    // The admin API went with it: nothing runs on half alive.
    assert!(std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err());
}

/// SPEC §1, "start is truthful": a process that said `listening on` must not be ended by a
/// signal an operator's tools send routinely. A SIGHUP (log rotation, `systemctl reload`) that
/// arrives once tether listens but before its reload service runs is ignored until the reload service catches it, never the
/// default action that terminates the process.
#[test]
fn a_sighup_while_starting_does_not_end_tether() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let config = start_config(dir.path(), port, admin_port);
    let mut child = Running(spawn_tether(&config, &dir.path().join("t.log"), &[]));
    let pid = child.0.id();
    // From the moment the port answers (tether has bound and said so) HUP over and over for a
    // while: the moment before the reload service catches it is when it used to be fatal.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tether did not listen");
    }
    let answered = Instant::now();
    let target = i32::try_from(pid).unwrap();
    while answered.elapsed() < Duration::from_millis(300) {
        // SAFETY: kill(2) on the child this test spawned; no memory is touched.
        unsafe { libc::kill(target, libc::SIGHUP) };
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("tether ended by an early SIGHUP: {status}");
        }
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "still listening"
    );
    assert!(matches!(child.0.try_wait(), Ok(None)), "still running");
}
