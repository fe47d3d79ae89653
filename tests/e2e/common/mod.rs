//! The end-to-end harness: real upstreams, a real `tether` process, and an HTTP client.
#![allow(clippy::unwrap_used)]

pub mod browser;
pub mod dns;
pub mod h2raw;
pub mod hostile;
pub mod hostile_mix;
pub mod ops;
pub mod pebble;
pub mod raw;
pub mod redis;
pub mod tls_upstream;
pub mod upstream;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use upstream::Upstream;

/// The secret every test config signs cookies with.
pub const SECRET: &str = "end-to-end test secret, 32 bytes or more";

/// A loopback port that is free now and that no other test of this process was given.
///
/// The port is bound only later, by a tether or Redis the test starts, so until then anything
/// may take it. The kernel hands out ports for `bind(:0)` and outgoing connections from its
/// ephemeral range, where the tests' own clients and upstreams take hundreds while other tests
/// wait to bind; so ports come from below that range, in turn from an offset that differs per
/// process (other test processes on the machine use the same range). The kernel's choice is
/// the fallback when that range is too small.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static TOP: OnceLock<u32> = OnceLock::new();
    let top = *TOP.get_or_init(|| {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
        range
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(LOW)
    });
    let span = top.saturating_sub(LOW);
    if span < 4_096 {
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let offset = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, SeqCst);
        let port = (LOW + (offset + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{top}");
}

/// Polls `cond` every 20 ms until it holds or `within` passes; panics with `what` on timeout.
pub fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The standard head of a test config: server files in `dir`, one listener, the test secret.
pub fn head(dir: &std::path::Path, port: u16) -> String {
    format!(
        "server:\n  pid_file: {d}/tether.pid\n  upgrade_sock: {d}/upgrade.sock\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n\
         listeners:\n  - address: 127.0.0.1:{port}\n\
         cookie_secret: \"{SECRET}\"\n",
        d = dir.display()
    )
}

/// Signal `n` as a bit of a `/proc` signal mask (bit n-1).
pub const fn signal_bit(n: u32) -> u64 {
    1 << (n - 1)
}

/// SIGHUP (reload), SIGINT, SIGQUIT (upgrade) and SIGTERM: the signals a started tether catches.
pub const TETHER_SIGNALS: u64 = signal_bit(1) | signal_bit(2) | signal_bit(3) | signal_bit(15);

/// True when process `pid` has handlers for every signal in `mask` (its `SigCgt` in
/// `/proc/<pid>/status`); false when it has not, or is gone.
pub fn catches(pid: u32, mask: u64) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caught| caught & mask == mask)
}

/// True while process `pid` runs: it exists and has not exited (a zombie has exited).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|state| !state.trim_start().starts_with('Z'))
    })
}

/// [`head`] with a second listener, TLS on `tls_port` with `cert` and `key` (PEM files).
pub fn head_with_tls(
    dir: &std::path::Path,
    port: u16,
    tls_port: u16,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> String {
    head(dir, port).replace(
        "cookie_secret:",
        &format!(
            "  - address: 127.0.0.1:{tls_port}\n    tls: {{ cert_path: {}, key_path: {} }}\ncookie_secret:",
            cert.display(),
            key.display()
        ),
    )
}

/// The `tether` binary under test.
pub fn tether_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tether"))
}

/// Runs `tether --config <yaml> --test` and returns (success, stdout + stderr).
pub fn config_test(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tether.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(tether_bin())
        .arg("--config")
        .arg(&path)
        .arg("--test")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A running tether process, ended (by its own pid) when dropped.
pub struct Tether {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Tether {
    /// Starts tether with `head()` followed by `body` (pools, load balancers, ...).
    pub fn start(body: &str) -> Tether {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let yaml = format!("{}{body}", head(dir.path(), port));
        Self::start_with(dir, port, &yaml)
    }

    /// Starts tether on a complete config that listens on `port`.
    pub fn start_with(dir: tempfile::TempDir, port: u16, yaml: &str) -> Tether {
        Self::start_with_env(dir, port, yaml, &[])
    }

    /// As [`Tether::start`], with `env` set in tether's environment (for `${VAR}` in the config).
    /// Tests share one process, so they give tether its variables rather than set their own.
    pub fn start_env(body: &str, env: &[(&str, &str)]) -> Tether {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let yaml = format!("{}{body}", head(dir.path(), port));
        Self::start_with_env(dir, port, &yaml, env)
    }

    /// As [`Tether::start_with`], with `env` set in tether's environment.
    pub fn start_with_env(
        dir: tempfile::TempDir,
        port: u16,
        yaml: &str,
        env: &[(&str, &str)],
    ) -> Tether {
        let config = dir.path().join("tether.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("tether.log")).unwrap();
        let child = Command::new(tether_bin())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut t = Tether {
            child,
            port,
            dir,
            config,
        };
        t.wait_listening();
        t
    }

    /// Waits until tether listens and catches the signals tests send it. Its listeners accept
    /// a moment before its SIGHUP service and Pingora's QUIT/TERM/INT watch are in place, and a
    /// signal in that moment ends the process (the default action); a test that reloads right
    /// after start would then fail by the machine's load, not by tether's behaviour.
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(self.addr()).is_ok() && catches(self.pid(), TETHER_SIGNALS) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tether exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "tether did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True once the process has exited (it is reaped here).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Everything tether logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("tether.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    /// The endpoint that answered (`x-endpoint`), or "" when tether answered itself.
    pub fn endpoint(&self) -> &str {
        self.headers
            .get("x-endpoint")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The `__cflb` token minted by this response, if any.
    pub fn cflb(&self) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            c.strip_prefix("__cflb=")
                .map(|rest| rest.split(';').next().unwrap().to_string())
        })
    }
}

/// A client without cookie jar, redirects or proxies, so every test states what it sends.
pub fn client() -> reqwest::blocking::Client {
    client_from("127.0.0.1".parse().unwrap())
}

/// As [`client`], with connections made from `local` (any 127.0.0.0/8 address works).
pub fn client_from(local: std::net::IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .local_address(local)
        .build()
        .unwrap()
}

/// GET `url` with an optional `Host` and extra headers.
pub fn get(
    c: &reqwest::blocking::Client,
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = c.get(url);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

/// A `Cookie` header value for a session pinned to endpoint `name` of `t`: new sessions are
/// opened until one lands there (panics after 1000, which cookie affinity makes unlikely).
pub fn cookie_pinned_to(t: &Tether, name: &str) -> String {
    let c = client();
    for _ in 0..1000 {
        let r = get(&c, &t.url("/"), None, &[]);
        if r.endpoint() == name {
            return format!("__cflb={}", r.cflb().unwrap());
        }
    }
    panic!("no new session landed on {name} in 1000");
}

/// A YAML list of endpoints `{ name, address }` for upstreams.
pub fn endpoints(ups: &[&Upstream]) -> String {
    ups.iter()
        .map(|u| format!("      - {{ name: {}, address: \"{}\" }}\n", u.name, u.addr))
        .collect()
}

/// Three upstreams named a, b and c: the fewest where a session can move away from its
/// endpoint and a third one stays untouched.
pub fn three_upstreams() -> [Upstream; 3] {
    [
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("c"),
    ]
}

/// A config body with one pool `web` of `ups` behind the catch-all balancer `*`; `balancer`
/// adds that balancer's own lines (e.g. `"    session_affinity: cookie\n"`).
pub fn one_pool(ups: &[&Upstream], balancer: &str) -> String {
    format!(
        "pools:\n  - id: web\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n{balancer}",
        endpoints(ups)
    )
}

/// tether in front of [`three_upstreams`] with [`one_pool`]`(.., balancer)`.
pub fn start_three(balancer: &str) -> (Tether, [Upstream; 3]) {
    let ups = three_upstreams();
    let t = Tether::start(&one_pool(&ups.each_ref(), balancer));
    (t, ups)
}

/// Sends raw bytes on a fresh connection and returns the response's status code, or `None` when
/// the connection is closed without a response. Reads for at most 5 s.
pub fn raw_status(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    use std::io::Write;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    read_status(&mut s)
}

/// Reads a response head from `s` and returns its status code (`None` on close or timeout).
pub fn read_status(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Tether with an admin listener (its port returned) in front of two upstreams, `a` and `b c` (a
/// name that needs percent-encoding in an admin path), behind the balancer `"*"`, whose further
/// settings are `balancer` (YAML lines indented as its keys).
pub fn start_with_b_c(balancer: &str) -> (Tether, [Upstream; 2], u16) {
    let (a, bc) = (Upstream::start("a"), Upstream::start("b c"));
    let admin_port = free_port();
    let t = Tether::start(&format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         pools:\n  - id: web\n    endpoints:\n\
         \x20     - {{ name: a, address: \"{}\" }}\n\
         \x20     - {{ name: \"b c\", address: \"{}\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n{balancer}",
        a.addr, bc.addr
    ));
    wait_for(
        "the admin listener",
        std::time::Duration::from_secs(20),
        || TcpStream::connect(("127.0.0.1", admin_port)).is_ok(),
    );
    (t, [a, bc], admin_port)
}
