//! A real Redis for the state-store tests: Debian's `redis-server` on a free loopback port, no
//! persistence, in a temporary directory; stopped by its own pid (also on a panic).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for};

/// A running `redis-server` this test started.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
    /// Serves TLS only (a self-signed certificate made at test time).
    tls: bool,
}

impl Redis {
    /// Starts `redis-server` on a free port.
    pub fn start() -> Redis {
        Self::start_on(free_port(), None)
    }

    /// Starts `redis-server` on `port`, requiring `password` when given.
    pub fn start_on(port: u16, password: Option<&str>) -> Redis {
        let mut r = Redis {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            password: password.map(str::to_string),
            tls: false,
        };
        r.restart();
        r
    }

    /// Starts `redis-server` serving TLS only, with a self-signed certificate.
    pub fn start_tls() -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            password: None,
            tls: true,
        };
        super::ops::self_signed(r.dir.path());
        r.restart();
        r
    }

    /// (Re)starts the server on the same port, empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new("redis-server");
        if self.tls {
            let (cert, key) = (
                self.dir.path().join("cert.pem"),
                self.dir.path().join("key.pem"),
            );
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&cert)
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        self.child = Some(cmd.spawn().expect("redis-server (make deps installs it)"));
        wait_for("redis-server to answer", Duration::from_secs(10), || {
            if self.tls {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                self.command(&["PING"]).is_some_and(|r| r == "+PONG")
            }
        });
    }

    /// Kills the server (SIGKILL, by pid) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis://` URL of the server.
    pub fn url(&self) -> String {
        if self.tls {
            // The certificate is self-signed: the client is told not to verify it.
            return format!("rediss://127.0.0.1:{}/#insecure", self.port);
        }
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Sends one command and returns the first line of the answer (`+OK`, `:1`, `$-1`, the
    /// value of a bulk string...), or `None` when the server does not answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = String::new();
        if let Some(p) = &self.password {
            out.push_str(&resp(&["AUTH", p]));
        }
        out.push_str(&resp(args));
        s.write_all(out.as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        if self.password.is_some() {
            r.read_line(&mut line).ok()?;
            line.clear();
        }
        r.read_line(&mut line).ok()?;
        let first = line.trim_end().to_string();
        if first.starts_with('$') && first != "$-1" {
            line.clear();
            r.read_line(&mut line).ok()?;
            return Some(line.trim_end().to_string());
        }
        (!first.is_empty()).then_some(first)
    }

    /// The key names matching `pattern` (`KEYS`; a test Redis is small), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert!(self.password.is_none(), "keys() speaks without AUTH");
        s.write_all(resp(&["KEYS", pattern]).as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let n: usize = line.trim_end().trim_start_matches('*').parse().unwrap();
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            line.clear();
            r.read_line(&mut line).unwrap();
            let len: usize = line.trim_end().trim_start_matches('$').parse().unwrap();
            let mut key = vec![0u8; len + 2];
            std::io::Read::read_exact(&mut r, &mut key).unwrap();
            key.truncate(len);
            keys.push(String::from_utf8(key).unwrap());
        }
        keys.sort();
        keys
    }

    /// How many keys the server holds (`DBSIZE`).
    pub fn dbsize(&self) -> u64 {
        let answer = self.command(&["DBSIZE"]).unwrap();
        answer.trim_start_matches(':').parse().unwrap()
    }
}

fn resp(args: &[&str]) -> String {
    let mut s = format!("*{}\r\n", args.len());
    for a in args {
        s.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
