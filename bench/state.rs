//! State-store benchmark: the same header-affinity load through a tether with the embedded store
//! and through one with the Redis store (a real `redis-server` started here), interleaved in
//! one run. Reports CPU per request of the tether process, client-side p50/p99 latency, and the
//! Redis round trips per request. See bench/README.md.
//!
//!     make bench-state        (or: cargo build --release --bin tether &&
//!                              cargo run --release --example bench_state -- [N] [C] [S])
//!
//! N requests per round (default 20000), C client threads with keep-alive (4), S header sessions
//! (200). `TETHER_BIN` overrides the binary (default: target/release/tether).

#![allow(clippy::unwrap_used, dead_code)]

#[path = "../tests/e2e/common/upstream.rs"]
mod upstream;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use upstream::Upstream;

fn tether_bin() -> PathBuf {
    std::env::var_os("TETHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/tether"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `INFO commandstats` of the Redis on `port`: total calls of every command.
fn redis_calls(port: u16, command: &str) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut header = String::new();
    r.read_line(&mut header).unwrap();
    let len: usize = header.trim_start_matches('$').trim().parse().unwrap();
    let mut body = vec![0u8; len];
    std::io::Read::read_exact(&mut r, &mut body).unwrap();
    let text = String::from_utf8(body).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    ticks as f64 / hz
}

struct Tether {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tether(state: &str, ups: &[Upstream]) -> Tether {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let eps: String = ups
        .iter()
        .map(|u| format!("      - {{ name: {}, address: \"{}\" }}\n", u.name, u.addr))
        .collect();
    let yaml = format!(
        "server: {{ pid_file: {d}/t.pid, upgrade_sock: {d}/u.sock, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1, threads: 1, work_stealing: false }}\n\
         listeners: [{{ address: \"127.0.0.1:{port}\" }}]\n\
         cookie_secret: \"state bench secret, long enough to be fine\"\n\
         {state}\
         pools:\n  - id: web\n    endpoints:\n{eps}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: header\n\
         \x20   session_affinity_attributes: {{ headers: [x-user] }}\n",
        d = dir.path().display()
    );
    let config = dir.path().join("tether.yaml");
    std::fs::write(&config, yaml).unwrap();
    let child = Command::new(tether_bin())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port);
    Tether {
        child,
        port,
        _dir: dir,
    }
}

struct Round {
    requests: usize,
    per_second: f64,
    cpu_us_per_request: f64,
    p50_us: f64,
    p99_us: f64,
    getex_per_request: f64,
    set_per_request: f64,
}

fn round(t: &Tether, total: usize, workers: usize, sessions: usize, redis_port: u16) -> Round {
    let url = format!("http://127.0.0.1:{}/", t.port);
    // Warm-up: every session exists before the measurement.
    let c = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    for s in 0..sessions {
        c.get(&url)
            .header("x-user", format!("user-{s}"))
            .send()
            .unwrap();
    }
    let (getex0, set0) = (
        redis_calls(redis_port, "getex"),
        redis_calls(redis_port, "set"),
    );
    let cpu0 = cpu_seconds(t.child.id());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (url, next) = (url.clone(), next.clone());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .no_proxy()
                    .build()
                    .unwrap();
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, SeqCst);
                    if i >= total {
                        return lat;
                    }
                    let t0 = Instant::now();
                    let r = c
                        .get(&url)
                        .header("x-user", format!("user-{}", i % sessions))
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    let _ = r.bytes();
                    lat.push(t0.elapsed().as_secs_f64() * 1e6);
                }
            })
        })
        .collect();
    let mut lat: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(t.child.id()) - cpu0;
    let (getex, set) = (
        redis_calls(redis_port, "getex") - getex0,
        redis_calls(redis_port, "set") - set0,
    );
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Round {
        requests: total,
        per_second: total as f64 / elapsed.as_secs_f64(),
        cpu_us_per_request: cpu * 1e6 / total as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        getex_per_request: getex as f64 / total as f64,
        set_per_request: set as f64 / total as f64,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(20_000);
    let workers = args.get(1).copied().unwrap_or(4);
    let sessions = args.get(2).copied().unwrap_or(200);
    const ROUNDS: usize = 3;

    let redis_dir = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(redis_dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (make deps installs it)");
    wait_port(redis_port);
    let ups: Vec<Upstream> = ["e1", "e2", "e3"]
        .iter()
        .map(|n| Upstream::start(n))
        .collect();
    let embedded = start_tether("", &ups);
    let shared = start_tether(
        &format!(
            "state: {{ store: redis, redis: {{ url: \"redis://127.0.0.1:{redis_port}\", timeout_ms: 50 }} }}\n"
        ),
        &ups,
    );

    let mut rows: Vec<(&str, Vec<Round>)> = vec![("embedded", Vec::new()), ("redis", Vec::new())];
    for _ in 0..ROUNDS {
        for (i, t) in [&embedded, &shared].into_iter().enumerate() {
            let r = round(t, total, workers, sessions, redis_port);
            rows[i].1.push(r);
        }
    }
    drop((embedded, shared));
    let _ = redis.kill();
    let _ = redis.wait();

    println!(
        "header affinity, {sessions} sessions, {total} requests x {ROUNDS} interleaved rounds per store, \
         {workers} keep-alive clients, tether threads: 1 (median of rounds)\n"
    );
    println!(
        "{:<9} {:>8} {:>12} {:>9} {:>9} {:>11} {:>9}",
        "store", "req/s", "CPU us/req", "p50 us", "p99 us", "GETEX/req", "SET/req"
    );
    for (name, rounds) in &rows {
        let m = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        println!(
            "{:<9} {:>8.0} {:>12.1} {:>9.0} {:>9.0} {:>11.4} {:>9.4}",
            name,
            m(|r| r.per_second),
            m(|r| r.cpu_us_per_request),
            m(|r| r.p50_us),
            m(|r| r.p99_us),
            m(|r| r.getex_per_request),
            m(|r| r.set_per_request),
        );
    }
    println!(
        "\nA session read within {} s of its last Redis read costs no round trip: expect\n\
         GETEX/req close to sessions / (req/s) = {sessions} / req/s (every session re-read once a second).",
        1
    );
}
