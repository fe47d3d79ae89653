//! A hostile crowd for the soak (SPEC §3.7): batches of slowloris, half-header keep-alive,
//! silent TLS and idle HTTP/2 connections, opened on loopback, held until tether cuts them (or
//! 30 s pass), then opened again, until stopped. Bounded: `per_kind` connections of each kind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::hostile::{read_response, try_tls_connect, H2_PREFACE_AND_SETTINGS};

/// The kinds of misbehaving connection.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A first header trickled a byte per poll.
    Slowloris,
    /// One request served, then half a second header and silence.
    HalfHeaderKeepAlive,
    /// TCP to the TLS listener, no handshake.
    IdleTls,
    /// TLS with ALPN h2, preface and SETTINGS, then silence.
    IdleH2,
}

/// How many connections of a kind were opened and how many tether cut.
#[derive(Debug, Clone, Copy)]
pub struct KindReport {
    pub kind: Kind,
    pub opened: u64,
    pub cut: u64,
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

pub struct HostileMix {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<KindReport>>,
}

impl HostileMix {
    /// Starts one thread per kind against the plain listener `plain` (Host `host`) and the TLS
    /// listener on `tls_port`.
    pub fn start(plain: SocketAddr, tls_port: u16, host: &'static str, per_kind: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let kinds = [
            Kind::Slowloris,
            Kind::HalfHeaderKeepAlive,
            Kind::IdleTls,
            Kind::IdleH2,
        ];
        let threads = kinds
            .into_iter()
            .map(|kind| {
                let stop = stop.clone();
                std::thread::spawn(move || run(kind, plain, tls_port, host, per_kind, &stop))
            })
            .collect();
        HostileMix { stop, threads }
    }

    /// Stops the crowd (its connections are closed) and returns what each kind saw.
    pub fn finish(self) -> Vec<KindReport> {
        self.stop.store(true, Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    }
}

const POLL: Duration = Duration::from_millis(5);

fn open(kind: Kind, plain: SocketAddr, tls_port: u16, host: &str) -> Option<Box<dyn Conn>> {
    let tcp = || {
        let s = TcpStream::connect(plain).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        Some(s)
    };
    match kind {
        Kind::Slowloris => {
            let mut s = tcp()?;
            s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes())
                .ok()?;
            s.set_read_timeout(Some(POLL)).ok()?;
            Some(Box::new(s))
        }
        Kind::HalfHeaderKeepAlive => {
            let mut s = tcp()?;
            s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
                .ok()?;
            read_response(&mut s)?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: ha").ok()?;
            s.set_read_timeout(Some(POLL)).ok()?;
            Some(Box::new(s))
        }
        Kind::IdleTls => {
            let s = TcpStream::connect(("127.0.0.1", tls_port)).ok()?;
            s.set_read_timeout(Some(POLL)).ok()?;
            Some(Box::new(s))
        }
        Kind::IdleH2 => {
            let mut s = try_tls_connect(tls_port, b"\x02h2", POLL)?;
            s.write_all(H2_PREFACE_AND_SETTINGS).ok()?;
            Some(Box::new(s))
        }
    }
}

/// True once the server has closed `c` (anything it sends first is read and dropped).
fn closed(c: &mut dyn Conn) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match c.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn run(
    kind: Kind,
    plain: SocketAddr,
    tls_port: u16,
    host: &str,
    per_kind: usize,
    stop: &AtomicBool,
) -> KindReport {
    let mut report = KindReport {
        kind,
        opened: 0,
        cut: 0,
    };
    while !stop.load(Relaxed) {
        let mut conns: Vec<Box<dyn Conn>> = (0..per_kind)
            .filter_map(|_| open(kind, plain, tls_port, host))
            .collect();
        report.opened += conns.len() as u64;
        let batch = Instant::now();
        while !conns.is_empty() && !stop.load(Relaxed) && batch.elapsed() < Duration::from_secs(30)
        {
            let before = conns.len();
            conns.retain_mut(|c| {
                if matches!(kind, Kind::Slowloris) {
                    let _ = c.write_all(b"x");
                }
                !closed(c.as_mut())
            });
            report.cut += (before - conns.len()) as u64;
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    report
}
