//! SPEC §5, graceful upgrade: the process started with `--upgrade` starts with the old one's
//! admin drains (countdown included), header sessions and health verdicts, with either store,
//! and no request of a loop running through the upgrade fails.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::ops::*;
use crate::common::redis::Redis;
use crate::common::*;

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
        || endpoint_status(admin_port, "web", "dead")["healthy"] == false,
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
    let before = endpoint_status(admin_port, "web", third)["drain_remaining_seconds"]
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

    let drained = endpoint_status(admin_port, "web", third);
    let dead_now = endpoint_status(admin_port, "web", "dead");
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
    assert!(
        old.log().contains("handed state to the new process"),
        "the new process confirmed\n{logs}"
    );
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

/// uid and gid of the unprivileged process that plays another local user.
const NOBODY: u32 = 65534;

/// `perl -e script args...` run as uid/gid [`NOBODY`] (the tests run as root). Perl, because
/// Debian never goes without it (perl-base is essential), sockets included.
fn as_nobody(script: &str, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/perl",
        "-e",
        script,
    ])
    .args(args)
    .current_dir("/");
    c
}

/// Serves `$ARGV[1]` to every connection on the unix socket `$ARGV[0]`; "ready" once listening.
const SERVE_IMAGE: &str = r#"
use IO::Socket::UNIX; use Socket;
my ($path, $image) = @ARGV;
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $path, Listen => 8) or die "bind: $!";
chmod 0777, $path;
$| = 1;
print "ready\n";
while (my $c = $s->accept) {
    $c->autoflush(1);
    print $c $image;
    shutdown($c, 1);
    my $ack;
    sysread($c, $ack, 16);
    close $c;
}
"#;

/// Connects to the unix socket `$ARGV[0]`, reads to EOF and prints how many bytes came.
const READ_ALL: &str = r#"
use IO::Socket::UNIX; use Socket;
alarm 5;
my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0]) or die "connect: $!";
my ($n, $buf) = (0, "");
while (my $r = sysread($c, $buf, 65536)) { $n += $r }
print "$n\n";
"#;

#[test]
fn handover_from_another_uid_is_refused() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let admin_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // A directory another user can write, as /tmp is.
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let port = free_port();
    let head = head(dir.path(), port).replace("grace_period_seconds: 0", "grace_period_seconds: 2");
    let mut old = Tether::start_with(
        dir,
        port,
        &format!(
            "{head}admin:\n  address: 127.0.0.1:{admin_port}\n\
             pools:\n  - id: web\n    endpoints:\n{}\
             load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
            endpoints(&[&ups[0], &ups[1]])
        ),
    );
    // The other user got to the hand-over socket first (in a sticky /tmp, tether could then
    // neither remove nor bind it): an image that drains every endpoint.
    let state_sock = old.dir.path().join("upgrade.sock.state");
    wait_for(
        "the old process's state socket",
        Duration::from_secs(10),
        || state_sock.exists(),
    );
    std::fs::remove_file(&state_sock).unwrap();
    let image = r#"{"version":1,"taken_at":0,"sessions":[],"endpoints":[
        {"pool":"web","name":"a","admin_drained":true,"drain_since":1},
        {"pool":"web","name":"b","admin_drained":true,"drain_since":1}]}"#;
    let mut impostor = as_nobody(SERVE_IMAGE, &[state_sock.to_str().unwrap(), image])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(impostor.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");

    let new_log = old.dir.path().join("tether-new.log");
    let mut new = upgrade(&mut old, &new_log);
    let statuses: Vec<u16> = (0..10)
        .map(|_| get(&client(), &old.url("/"), None, &[]).status)
        .collect();
    let drained: Vec<serde_json::Value> = ["a", "b"]
        .iter()
        .map(|n| endpoint_status(admin_port, "web", n)["admin_drained"].clone())
        .collect();
    let _ = new.kill();
    let _ = new.wait();
    let _ = impostor.kill();
    let _ = impostor.wait();
    let log = std::fs::read_to_string(&new_log).unwrap_or_default();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}\n{log}");
    assert_eq!(drained, [false, false], "{log}");
    let refused = log
        .lines()
        .find(|l| l.contains("upgrade without the old process's state"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(
        refused.contains("uid 65534") && refused.contains("refused"),
        "{refused}"
    );
}

#[test]
fn handover_connection_from_another_uid_gets_nothing_and_the_state_file_stays_on() {
    let a = Upstream::start("a");
    let admin_port = free_port();
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("state.json");
    let t = Tether::start(&format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         state:\n  file: {}\n\
         pools:\n  - id: web\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        file.display(),
        endpoints(&[&a])
    ));
    let state_sock = t.dir.path().join("upgrade.sock.state");
    wait_for("the state socket", Duration::from_secs(10), || {
        state_sock.exists()
    });
    // Reachable by others, as it is for a moment between bind and chmod, or under a lax umask.
    use std::os::unix::fs::PermissionsExt;
    let open = std::fs::Permissions::from_mode(0o777);
    std::fs::set_permissions(t.dir.path(), open.clone()).unwrap();
    std::fs::set_permissions(&state_sock, open).unwrap();

    let out = as_nobody(READ_ALL, &[state_sock.to_str().unwrap()])
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got.trim(),
        "0",
        "{got} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the refusal logged", Duration::from_secs(5), || {
        t.log().contains("refused, nothing sent") && t.log().contains("uid 65534")
    });

    // A process of tether's own uid that reads the image but never confirms.
    let mut s = std::os::unix::net::UnixStream::connect(&state_sock).unwrap();
    let mut image = String::new();
    std::io::Read::read_to_string(&mut s, &mut image).unwrap();
    assert!(image.contains("\"endpoints\""), "{image}");
    drop(s);
    wait_for(
        "the missing confirmation logged",
        Duration::from_secs(5),
        || t.log().contains("did not confirm"),
    );

    assert_eq!(
        admin(admin_port, "POST", "/pools/web/endpoints/a/drain", None).status,
        200
    );
    wait_for(
        "the drain written to the state file",
        Duration::from_secs(3),
        || std::fs::read_to_string(&file).is_ok_and(|s| s.contains("\"admin_drained\":true")),
    );
}
