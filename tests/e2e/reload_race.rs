//! Reloads from SIGHUP and `POST /reload` at the same time, with drains through the admin API in
//! between: each reload is one transaction, so no endpoint's runtime state (admin drain, drain
//! clock) is lost, whatever the interleaving.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::ops::*;
use crate::common::*;

/// Many endpoints make every reload long enough for two to overlap.
const ENDPOINTS: usize = 300;
const DRAIN: u64 = 3600;

fn config(t_dir: &std::path::Path, port: u16, admin_port: u16, with_x: bool) -> String {
    let mut eps = String::new();
    for i in 0..ENDPOINTS {
        eps.push_str(&format!(
            // 127.0.0.2: never one of the ports `free_port` hands this test's tether.
            "      - {{ name: e{i}, address: \"127.0.0.2:{}\" }}\n",
            20_000 + i
        ));
    }
    if with_x {
        eps.push_str("      - { name: x, address: \"127.0.0.2:19999\" }\n");
    }
    format!(
        "{}admin:\n  address: 127.0.0.1:{admin_port}\npools:\n  - id: web\n    endpoints:\n{eps}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ drain_duration: {DRAIN} }}\n",
        head(t_dir, port)
    )
}

/// `yaml` with a long `trusted_proxies` list: a longer file to read and check, so that a reload
/// of a shorter one can run whole while this one is built.
fn with_proxies(mut yaml: String) -> String {
    yaml.push_str("trusted_proxies:\n");
    for i in 0..2000 {
        yaml.push_str(&format!("  - 10.{}.{}.0/24\n", i / 256, i % 256));
    }
    yaml
}

/// Replaces the config file in one step, so a reload reads the old file or the new, never half.
fn write(path: &std::path::Path, yaml: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn concurrent_reloads_and_drains_lose_no_runtime_state() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let with_x = with_proxies(config(dir.path(), port, admin_port, true));
    let without_x = config(dir.path(), port, admin_port, false);
    let t = Tether::start_with(dir, port, &with_x);
    let status = || admin(admin_port, "GET", "/status", None).json();
    let post = |path: &str| admin(admin_port, "POST", path, None);

    // e0 stays in every file: drained once, it must stay draining (with its clock running)
    // through every reload below.
    assert_eq!(post("/pools/web/endpoints/e0/drain").status, 200);

    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut rounds, mut checked) = (0, 0);
    while rounds < 40 && Instant::now() < deadline {
        rounds += 1;
        // A SIGHUP reload of one version and a POST /reload of the other started a little later
        // (a later start each round, which version first alternating), so that in some round
        // the short reload (without x) runs whole inside the long one (with x).
        let (first, second) = if rounds % 2 == 0 {
            (&with_x, &without_x)
        } else {
            (&without_x, &with_x)
        };
        write(&t.config, first);
        signal(t.pid(), "HUP");
        std::thread::sleep(Duration::from_micros(500 * (rounds % 40)));
        write(&t.config, second);
        assert_eq!(post("/reload").status, 200);
        write(&t.config, &with_x);
        // Whichever reload committed last is in effect. If it has x, an admin drain of x must
        // survive the next reload of the same file.
        if post("/pools/web/endpoints/x/drain").status == 200 {
            checked += 1;
            assert_eq!(post("/reload").status, 200);
            let s = status();
            let x = find_endpoint(&s, "web", "x").expect("x is in the file and was in effect");
            assert_eq!(
                (&x["admin_drained"], &x["state"]),
                (&serde_json::json!(true), &serde_json::json!("draining")),
                "round {rounds}: x lost its drain in a reload: {x}"
            );
        } else {
            assert_eq!(post("/reload").status, 200);
        }
        // Undrain and drain e0 again while SIGHUP reloads run: a reload must neither stop the
        // drain clock that the drain started nor undo the drain.
        signal(t.pid(), "HUP");
        assert_eq!(post("/pools/web/endpoints/e0/undrain").status, 200);
        signal(t.pid(), "HUP");
        assert_eq!(post("/pools/web/endpoints/e0/drain").status, 200);
        let s = status();
        let e0 = find_endpoint(&s, "web", "e0").unwrap();
        assert_eq!(e0["state"], "draining", "round {rounds}: {e0}");
        let remaining = e0["drain_remaining_seconds"].as_u64().unwrap();
        assert!(remaining > DRAIN - 60, "round {rounds}: {e0}");
    }
    assert!(checked > 0, "x was never in effect in {rounds} rounds");
}

/// In-process: two threads reload while a third flips the file between two versions; whenever
/// the flipping stops, the registry must hold exactly the states the live snapshot uses, so one
/// more reload of the same file keeps every endpoint's state.
#[test]
fn overlapping_reloads_leave_the_registry_matching_the_live_snapshot() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    use tether::instance::Instance;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tether.yaml");
    let with_x = with_proxies(config(dir.path(), 8080, 9901, true));
    let without_x = config(dir.path(), 8080, 9901, false);
    write(&path, &with_x);
    let live = Arc::new(Instance::load(&path).unwrap());
    let x_state = |live: &Instance| {
        let snap = live.snapshot();
        let x = snap.pools[0].endpoints.iter().find(|e| e.name == "x")?;
        Some(x.state.clone())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut storms = 0;
    while storms < 150 && Instant::now() < deadline {
        storms += 1;
        let stop = Arc::new(AtomicBool::new(false));
        let reloaders: Vec<_> = (0..2)
            .map(|_| {
                let (live, stop) = (live.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        live.reload().unwrap();
                    }
                })
            })
            .collect();
        for _ in 0..3 {
            write(&path, &without_x);
            write(&path, &with_x);
        }
        stop.store(true, SeqCst);
        for r in reloaders {
            r.join().unwrap();
        }
        // The file has x. Whatever the last commit was, the next reload gives x the state the
        // registry holds for it: the live snapshot's, when x is live.
        let before = x_state(&live);
        live.reload().unwrap();
        let after = x_state(&live).unwrap();
        if let Some(before) = before {
            assert!(
                Arc::ptr_eq(&before, &after),
                "storm {storms}: a reload of the same file gave x a new state"
            );
        }
    }
}
