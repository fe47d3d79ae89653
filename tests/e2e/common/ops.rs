//! Harness pieces for operating tether: signals to a pid the test started, admin API calls,
//! a bounded request loop, a self-signed certificate, the graceful-upgrade steps, and a process
//! watched from outside (its exit, a listening socket taken from it).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{catches, client, get, running, signal_bit, tether_bin, wait_for};

/// Sends `signal` (e.g. "HUP", "QUIT") to `pid`, a process this test started. A signal tether
/// catches is sent once the process catches it (within 20 s), so that a process started a moment
/// ago is not ended by the signal's default action instead (see `Tether::wait_listening`).
pub fn signal(pid: u32, signal: &str) {
    let number = match signal {
        "HUP" => Some(1),
        "INT" => Some(2),
        "QUIT" => Some(3),
        "TERM" => Some(15),
        _ => None,
    };
    if let Some(n) = number {
        wait_for(
            &format!("process {pid} to catch SIG{signal}"),
            Duration::from_secs(20),
            || catches(pid, signal_bit(n)) || !running(pid),
        );
    }
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
}

/// Starts `tether --config <config> <extra...>` with its log in `log`; the caller ends it.
pub fn spawn_tether(config: &Path, log: &Path, extra: &[&str]) -> Child {
    Command::new(tether_bin())
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// How many times `needle` occurs in the file at `path`.
pub fn count_in(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// A response from the admin API.
#[derive(Debug)]
pub struct AdminResp {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl AdminResp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Calls the admin API at `port`: `method` "GET" or "POST", with an optional bearer token.
pub fn admin(port: u16, method: &str, path: &str, token: Option<&str>) -> AdminResp {
    let c = client();
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut req = match method {
        "GET" => c.get(&url),
        "POST" => c.post(&url),
        other => c.request(other.parse().unwrap(), &url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    AdminResp {
        status,
        content_type,
        headers: resp.headers().clone(),
        body: resp.text().unwrap(),
    }
}

/// The entry of endpoint `name` in pool `pool` of a `/status` answer, if it is there.
pub fn find_endpoint<'a>(
    status: &'a serde_json::Value,
    pool: &str,
    name: &str,
) -> Option<&'a serde_json::Value> {
    status["pools"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == pool)?["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// The entry of endpoint `name` in pool `pool` of a `/status` answer; panics, showing the
/// answer, when it is not there.
pub fn endpoint_in(status: &serde_json::Value, pool: &str, name: &str) -> serde_json::Value {
    find_endpoint(status, pool, name)
        .unwrap_or_else(|| panic!("no endpoint {pool}/{name} in /status: {status}"))
        .clone()
}

/// `GET /status` on the admin listener at `admin_port` (no token), and the entry of endpoint
/// `name` in pool `pool`: its `state`, `healthy`, `admin_drained`, `drain_remaining_seconds`...
pub fn endpoint_status(admin_port: u16, pool: &str, name: &str) -> serde_json::Value {
    endpoint_in(
        &admin(admin_port, "GET", "/status", None).json(),
        pool,
        name,
    )
}

/// What a request loop saw.
#[derive(Debug, Default)]
pub struct LoopReport {
    pub ok: usize,
    /// Every failure: transport errors, unexpected statuses, answers from the wrong endpoint.
    pub failures: Vec<String>,
}

/// A bounded request loop on its own thread: GETs `url` with `cookie` (if any) until stopped or
/// `max` requests, checking each answer is 200 from `expect_endpoint` (if given).
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<LoopReport>,
}

impl RequestLoop {
    /// `fresh_connections`: a new TCP connection per request, so every request goes through
    /// accept() — what a socket handover must not lose.
    pub fn start(
        url: String,
        cookie: Option<String>,
        expect_endpoint: Option<String>,
        fresh_connections: bool,
        max: usize,
    ) -> RequestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut b = reqwest::blocking::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10));
            if fresh_connections {
                b = b.pool_max_idle_per_host(0);
            }
            let c = b.build().unwrap();
            let mut report = LoopReport::default();
            let headers: Vec<(&str, &str)> = cookie
                .as_deref()
                .map(|v| vec![("cookie", v)])
                .unwrap_or_default();
            let deadline = Instant::now() + Duration::from_secs(120);
            for i in 0..max {
                if flag.load(SeqCst) || Instant::now() > deadline {
                    break;
                }
                let mut req = c.get(&url);
                for (k, v) in &headers {
                    req = req.header(*k, *v);
                }
                match req.send() {
                    Err(e) => report.failures.push(format!("request {i}: {e:?}")),
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let ep = r
                            .headers()
                            .get("x-endpoint")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        let _ = r.bytes();
                        let wrong = expect_endpoint.as_deref().is_some_and(|e| e != ep);
                        if status != 200 || wrong {
                            report
                                .failures
                                .push(format!("request {i}: {status} from {ep:?}"));
                        } else {
                            report.ok += 1;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            report
        });
        RequestLoop { stop, handle }
    }

    /// Stops the loop and returns what it saw.
    pub fn finish(self) -> LoopReport {
        self.stop.store(true, SeqCst);
        self.handle.join().unwrap()
    }
}

/// Pins a new session at `url` and returns (cookie header value, endpoint).
pub fn pin(url: &str) -> (String, String) {
    let r = get(&client(), url, None, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let token = r.cflb().expect("a first visit sets __cflb");
    (format!("__cflb={token}"), r.endpoint().to_string())
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM into `dir`;
/// returns (cert path, key path).
pub fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    (c, k)
}

/// The operator's steps: start `tether --upgrade` on the same config, wait until it listens on
/// the upgrade socket, SIGQUIT the old process; returns the new process once the old one exited.
pub fn upgrade(old: &mut super::Tether, new_log: &Path) -> Child {
    let new = spawn_tether(&old.config, new_log, &["--upgrade"]);
    let sock = old.dir.path().join("upgrade.sock");
    wait_for(
        "the new process's upgrade socket",
        Duration::from_secs(20),
        || sock.exists(),
    );
    signal(old.pid(), "QUIT");
    wait_for("the old process to exit", Duration::from_secs(60), || {
        old.exited()
    });
    new
}

/// A child process this test started, killed (by its own pid) when dropped, also on a panic.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `within` for `child` to exit: its status, or None if it still runs.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Takes descriptor `fd` of process `pid`, a child of this test, into this one (pidfd_getfd(2)).
pub fn take_fd(pid: u32, fd: i32) -> Option<socket2::Socket> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system calls; a descriptor they return is new and owned by nobody else.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let got = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        libc::close(pidfd);
        (got >= 0).then(|| socket2::Socket::from_raw_fd(got))
    }
}

/// Shuts down, from this process, the socket process `pid` listens on `port` with: a listener
/// lost under it. Panics if there is none.
pub fn shut_down_listener(pid: u32, port: u16) {
    let listener = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(|fd| take_fd(pid, fd))
        .find(|s| {
            let local = s.local_addr().ok().and_then(|a| a.as_socket());
            s.is_listener().unwrap_or(false) && local.map(|a| a.port()) == Some(port)
        })
        .expect("a socket listening on the port");
    listener.shutdown(std::net::Shutdown::Both).unwrap();
}
