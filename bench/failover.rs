//! Failover benchmark: for each `zero_downtime_failover` mode, N requests from C concurrent
//! cookie sessions through a real tether while the endpoint most sessions are pinned to is
//! killed (listener and connections closed) at N/3 and restarted at 2N/3. The monitor's
//! interval is Cloudflare's default 60 s, so the whole outage falls between two health checks:
//! exactly the window zero-downtime failover exists for. See bench/README.md.
//!
//!     cargo build --bin tether && cargo run --example failover -- [N] [C]
//!
//! `TETHER_BIN` overrides the binary (default: target/debug/tether).

#![allow(clippy::unwrap_used, dead_code)]

#[path = "../tests/e2e/common/upstream.rs"]
mod upstream;

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use upstream::Upstream;

struct Figures {
    requests: usize,
    failures: usize,
    victim_sessions: usize,
    retries: usize,
    repinned: usize,
    elapsed: Duration,
}

fn tether_bin() -> PathBuf {
    std::env::var_os("TETHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/tether"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cflb(resp: &reqwest::blocking::Response) -> Option<String> {
    resp.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.strip_prefix("__cflb=")
            .map(|rest| rest.split(';').next().unwrap_or("").to_string())
    })
}

fn run(mode: &str, total: usize, workers: usize) -> Figures {
    let mut ups: Vec<Upstream> = ["e1", "e2", "e3"]
        .iter()
        .map(|n| Upstream::start(n))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let eps: String = ups
        .iter()
        .map(|u| format!("      - {{ name: {}, address: \"{}\" }}\n", u.name, u.addr))
        .collect();
    let yaml = format!(
        "server: {{ pid_file: {d}/t.pid, upgrade_sock: {d}/u.sock, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1, threads: 2 }}\n\
         listeners: [{{ address: \"127.0.0.1:{port}\" }}]\n\
         cookie_secret: \"failover bench secret, long enough to be fine\"\n\
         monitors: [{{ id: m, path: /health, interval: 60, timeout: 5 }}]\n\
         pools:\n  - id: web\n    monitor: m\n    endpoints:\n{eps}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ zero_downtime_failover: {mode} }}\n",
        d = dir.path().display()
    );
    let config = dir.path().join("tether.yaml");
    std::fs::write(&config, yaml).unwrap();
    let log_path = dir.path().join("tether.log");
    let mut child = Command::new(tether_bin())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start tether (build it first: cargo build --bin tether)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tether did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the first health check pass, so the kill below happens between checks.
    std::thread::sleep(Duration::from_millis(500));

    let issued = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let repinned = Arc::new(AtomicUsize::new(0));
    let homes = Arc::new(Mutex::new(HashMap::<usize, String>::new()));
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (issued, failures, repinned, homes, url) = (
                issued.clone(),
                failures.clone(),
                repinned.clone(),
                homes.clone(),
                url.clone(),
            );
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut cookie: Option<String> = None;
                while issued.fetch_add(1, SeqCst) < total {
                    let mut req = c.get(&url);
                    if let Some(v) = &cookie {
                        req = req.header("cookie", format!("__cflb={v}"));
                    }
                    match req.send() {
                        Ok(r) if r.status() == 200 => {
                            if let Some(new) = cflb(&r) {
                                if cookie.is_some() {
                                    repinned.fetch_add(1, SeqCst);
                                }
                                cookie = Some(new);
                                let served =
                                    r.headers()["x-endpoint"].to_str().unwrap().to_string();
                                homes.lock().unwrap().insert(w, served);
                            }
                            let _ = r.bytes();
                        }
                        _ => {
                            failures.fetch_add(1, SeqCst);
                        }
                    }
                }
            })
        })
        .collect();

    let wait_until = |n: usize| {
        while issued.load(SeqCst) < n {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    wait_until(total / 3);
    let victim_name = {
        let homes = homes.lock().unwrap();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for h in homes.values() {
            *count.entry(h.as_str()).or_default() += 1;
        }
        let (name, _) = count
            .into_iter()
            .max_by_key(|&(n, c)| (c, n.to_string()))
            .unwrap();
        name.to_string()
    };
    let victim_sessions = homes
        .lock()
        .unwrap()
        .values()
        .filter(|h| **h == victim_name)
        .count();
    let victim = ups.iter_mut().find(|u| u.name == victim_name).unwrap();
    victim.stop();
    wait_until(2 * total / 3);
    victim.restart();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    Figures {
        requests: total,
        failures: failures.load(SeqCst),
        victim_sessions,
        retries: log.matches(" retry on ").count(),
        repinned: repinned.load(SeqCst),
        elapsed,
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(3000);
    let workers = args.get(1).copied().unwrap_or(8);
    println!(
        "failover bench: {total} requests per mode, {workers} concurrent cookie sessions, 3 endpoints;\n\
         the endpoint most sessions are pinned to is killed at {} and restarted at {} requests;\n\
         monitor interval 60 s (the outage is never seen by a health check)\n",
        total / 3,
        2 * total / 3
    );
    println!(
        "{:<10} {:>8} {:>9} {:>8} {:>16} {:>9} {:>8}",
        "mode", "requests", "failures", "failed%", "victim sessions", "failovers", "re-pins"
    );
    for mode in ["none", "temporary", "sticky"] {
        let f = run(mode, total, workers);
        println!(
            "{:<10} {:>8} {:>9} {:>7.2}% {:>16} {:>9} {:>8}   ({:.1} s)",
            mode,
            f.requests,
            f.failures,
            100.0 * f.failures as f64 / f.requests as f64,
            format!("{}/{workers}", f.victim_sessions),
            f.retries,
            f.repinned,
            f.elapsed.as_secs_f64()
        );
    }
}
