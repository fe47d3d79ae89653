//! SPEC §5, restart with `state.file` (embedded store): admin drains are on disk within a
//! second, header sessions at shutdown (and every minute); both come back at the next start.
//! A `kill -9` keeps exactly what was written, and a corrupt file never stops tether.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::common::ops::*;
use crate::common::*;

fn body(state_file: &Path, admin_port: u16, ups: &[&Upstream]) -> String {
    format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         state:\n  file: {}\n\
         monitors:\n  - {{ id: m, path: /health, interval: 1, timeout: 1 }}\n\
         pools:\n  - id: web\n    monitor: m\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: header\n\
         \x20   session_affinity_attributes: {{ headers: [\"cookie:sid\"], drain_duration: 0 }}\n\
         \x20 - name: drain.test\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ drain_duration: 300 }}\n",
        state_file.display(),
        endpoints(ups)
    )
}

fn session(t: &Tether, sid: &str) -> String {
    let r = get(
        &client(),
        &t.url("/"),
        None,
        &[("cookie", &format!("sid={sid}"))],
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.endpoint().to_string()
}

fn post(admin_port: u16, path: &str) {
    assert_eq!(admin(admin_port, "POST", path, None).status, 200);
}

/// Re-pins `sid` away from its hashed endpoint by a drain and an undrain; returns (hashed, moved).
fn repin(t: &Tether, admin_port: u16, sid: &str) -> (String, String) {
    let hashed = session(t, sid);
    post(admin_port, &format!("/pools/web/endpoints/{hashed}/drain"));
    let moved = session(t, sid);
    assert_ne!(moved, hashed);
    post(
        admin_port,
        &format!("/pools/web/endpoints/{hashed}/undrain"),
    );
    (hashed, moved)
}

fn file_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn file_says_drained(path: &Path, name: &str) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| {
            v["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == name && e["admin_drained"] == true)
        })
}

#[test]
fn drains_and_sessions_survive_a_sigterm_restart() {
    let ups = three_upstreams();
    let ups: Vec<&Upstream> = ups.iter().collect();
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("state.json");
    let admin_port = free_port();
    let mut t = Tether::start(&body(&file, admin_port, &ups));
    let (hashed, moved) = repin(&t, admin_port, "alice");
    let third = ["a", "b", "c"]
        .into_iter()
        .find(|n| *n != hashed && *n != moved)
        .unwrap();
    post(admin_port, &format!("/pools/web/endpoints/{third}/drain"));
    let before = endpoint_status(admin_port, "web", third)["drain_remaining_seconds"]
        .as_u64()
        .unwrap();
    signal(t.pid(), "TERM");
    wait_for("tether to exit", Duration::from_secs(20), || t.exited());
    let _ = file_json(&file); // whole JSON
    assert!(!state.path().join("state.json.tmp").exists());
    drop(t);

    let t = Tether::start(&body(&file, admin_port, &ups));
    // The listener is bound before the state is restored: wait for the line, do not race it.
    wait_for("the restore logged", Duration::from_secs(5), || {
        t.log().contains("restored 1 drains and 1 header sessions")
    });
    let log = t.log();
    assert_eq!(
        session(&t, "alice"),
        moved,
        "the re-pinned session is back\n{log}"
    );
    let e = endpoint_status(admin_port, "web", third);
    assert_eq!(e["admin_drained"], true, "{e}");
    assert_eq!(e["state"], "draining", "{e}");
    let after = e["drain_remaining_seconds"].as_u64().unwrap();
    assert!(
        after <= before && after + 60 > before,
        "{before} then {after}"
    );
}

#[test]
fn kill_9_keeps_what_was_written_and_nothing_torn() {
    let ups = three_upstreams();
    let upr: Vec<&Upstream> = ups.iter().collect();
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("state.json");
    let admin_port = free_port();
    let t = Tether::start(&body(&file, admin_port, &upr));
    // Written: a re-pin made before a drain change (the drain write carries it).
    let (_, moved) = repin(&t, admin_port, "alice");
    let drained = if moved == "c" { "b" } else { "c" };
    post(admin_port, &format!("/pools/web/endpoints/{drained}/drain"));
    wait_for(
        "the drain on disk within a second",
        Duration::from_secs(2),
        || file_says_drained(&file, drained),
    );
    // Not written: a re-pin by health after the last drain change (sessions go to disk only
    // every minute and at shutdown).
    let bob = session(&t, "bob");
    let bob_up = ups.iter().find(|u| u.name == bob).unwrap();
    bob_up.set_health(503);
    wait_for("bob's endpoint unhealthy", Duration::from_secs(10), || {
        endpoint_status(admin_port, "web", &bob)["healthy"] == false
    });
    let bob_moved = session(&t, "bob");
    assert_ne!(bob_moved, bob);
    bob_up.set_health(200);
    signal(t.pid(), "KILL");
    drop(t);
    let _ = file_json(&file); // whole JSON: the write is atomic

    let t = Tether::start(&body(&file, admin_port, &upr));
    wait_for(
        "bob's endpoint healthy again",
        Duration::from_secs(10),
        || endpoint_status(admin_port, "web", &bob)["healthy"] == true,
    );
    assert_eq!(
        endpoint_status(admin_port, "web", drained)["admin_drained"],
        true
    );
    assert_eq!(session(&t, "alice"), moved, "written before the kill: kept");
    assert_eq!(
        session(&t, "bob"),
        bob,
        "re-pinned after the last write: lost"
    );
}

#[test]
fn corrupt_or_unreadable_state_file_is_logged_and_ignored() {
    let a = Upstream::start("a");
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("state.json");
    std::fs::write(&file, b"{\"version\": 1, \"endpoints\": [ {\"pool\": tor").unwrap();
    let admin_port = free_port();
    let t = Tether::start(&body(&file, admin_port, &[&a]));
    assert_eq!(session(&t, "alice"), "a");
    wait_for("the corrupt file logged", Duration::from_secs(5), || {
        t.log().contains("is not a tether state file")
    });
    // It is replaced by a good one at the next change.
    post(admin_port, "/pools/web/endpoints/a/drain");
    wait_for("a good file written", Duration::from_secs(2), || {
        file_says_drained(&file, "a")
    });
    drop(t);
    // A directory where the file should be: unreadable, still no reason not to start.
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let t = Tether::start(&body(&file, admin_port, &[&a]));
    assert_eq!(session(&t, "alice"), "a");
    wait_for("the unreadable file logged", Duration::from_secs(5), || {
        t.log().contains("state file: cannot read")
    });
}

#[test]
fn state_file_is_0600_and_a_symlink_at_the_temp_path_is_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let a = Upstream::start("a");
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("state.json");
    // A file tether must never write: root-owned, as /etc/passwd would be.
    let victim = state.path().join("victim");
    std::fs::write(&victim, b"not tether's").unwrap();
    std::os::unix::fs::symlink(&victim, state.path().join("state.json.tmp")).unwrap();
    let admin_port = free_port();
    let t = Tether::start(&body(&file, admin_port, &[&a]));
    post(admin_port, "/pools/web/endpoints/a/drain");
    wait_for(
        "the drain on disk within a second",
        Duration::from_secs(2),
        || file_says_drained(&file, "a"),
    );
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"not tether's",
        "{}",
        t.log()
    );
    let meta = std::fs::symlink_metadata(&file).unwrap();
    assert!(meta.is_file(), "the state file is a file of its own");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::symlink_metadata(state.path().join("state.json.tmp")).is_err(),
        "the planted link is gone"
    );
}

/// The ids of the header sessions in the state file at `path`.
fn session_ids(path: &Path) -> Vec<String> {
    file_json(path)["sessions"][0]["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pin| pin[0].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn session_ids_in_the_state_file_are_keyed() {
    let ups = [Upstream::start("a"), Upstream::start("b")];
    let ups: Vec<&Upstream> = ups.iter().collect();
    let state = tempfile::tempdir().unwrap();
    let entries = [tether::config::SessionHeader::parse("cookie:sid").unwrap()];
    let bytes = tether::affinity::header_key::session_bytes(
        &entries,
        &http::HeaderMap::new(),
        &[b"sid=alice@example.com"],
        false,
    )
    .unwrap();
    let unkeyed = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
    // The same value under two secrets; a drain makes each tether write its file.
    let mut ids = Vec::new();
    for (n, secret) in [SECRET, "another secret, 32 bytes or more!"]
        .iter()
        .enumerate()
    {
        let file = state.path().join(format!("state-{n}.json"));
        let admin_port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let yaml = format!(
            "{}{}",
            head(dir.path(), port).replace(SECRET, secret),
            body(&file, admin_port, &ups)
        );
        let t = Tether::start_with(dir, port, &yaml);
        session(&t, "alice@example.com");
        post(admin_port, "/pools/web/endpoints/b/drain");
        wait_for("the file written", Duration::from_secs(3), || {
            file_says_drained(&file, "b")
        });
        let written = session_ids(&file);
        assert_eq!(written.len(), 1, "{written:?}");
        assert_ne!(
            written[0], unkeyed,
            "the id is not a bare hash of the value"
        );
        ids.push(written[0].clone());
    }
    assert_ne!(ids[0], ids[1], "another cookie_secret, another id");
}
