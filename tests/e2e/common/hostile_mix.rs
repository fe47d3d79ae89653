//! A hostile crowd for the soak (SPEC §3.7): batches of slowloris, half-header keep-alive,
//! silent TLS and idle HTTP/2 connections, HTTP/2 streams whose bodies never come, clients that
//! never read a large response, and requests to an endpoint that leads back to tether (a loop),
//! opened on loopback, held until tether cuts them (or 30 s pass), then opened again, until
//! stopped. Bounded: `per_kind` connections of each kind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::h2raw::headers_frame;
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
    /// TLS with ALPN h2 and ten POST streams whose bodies never come.
    StalledH2Body,
    /// A tiny receive window, a request for a large response, and never a read.
    SlowReader,
    /// A request to the balancer whose endpoint leads back to tether; "cut" counts its 508s.
    Loop,
}

/// Where the crowd connects.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    /// The plain listener.
    pub plain: SocketAddr,
    pub tls_port: u16,
    /// The Host of a well-served balancer.
    pub host: &'static str,
    /// The Host of the balancer whose endpoint leads back to tether.
    pub loop_host: &'static str,
}

/// A TCP relay on a free loopback port to `to`: an endpoint at its address is a loop that no
/// config check can see, as a NAT or a second proxy in front of tether would make it.
pub fn relay(to: SocketAddr) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    super::upstream::runtime().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
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
    pub fn start(to: Targets, per_kind: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let kinds = [
            Kind::Slowloris,
            Kind::HalfHeaderKeepAlive,
            Kind::IdleTls,
            Kind::IdleH2,
            Kind::StalledH2Body,
            Kind::SlowReader,
            Kind::Loop,
        ];
        let threads = kinds
            .into_iter()
            .map(|kind| {
                let stop = stop.clone();
                std::thread::spawn(move || run(kind, to, per_kind, &stop))
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

/// How long a slow reader holds its connection unread before checking that tether cut it.
const UNREAD: Duration = Duration::from_secs(8);

fn open(kind: Kind, to: Targets) -> Option<Box<dyn Conn>> {
    let (plain, tls_port, host) = (to.plain, to.tls_port, to.host);
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
        Kind::StalledH2Body => {
            let mut s = try_tls_connect(tls_port, b"\x02h2", POLL)?;
            s.write_all(H2_PREFACE_AND_SETTINGS).ok()?;
            for id in (1..20).step_by(2) {
                s.write_all(&headers_frame(id, "POST", "/echo", host, false))
                    .ok()?;
            }
            Some(Box::new(s))
        }
        Kind::SlowReader => {
            let s = super::upstream::runtime().block_on(async {
                let socket = tokio::net::TcpSocket::new_v4().ok()?;
                socket.set_recv_buffer_size(4096).ok()?;
                socket.connect(plain).await.ok()?.into_std().ok()
            })?;
            s.set_nonblocking(false).ok()?;
            let mut s = s;
            s.write_all(
                format!("GET /big/{} HTTP/1.1\r\nHost: {host}\r\n\r\n", 8 << 20).as_bytes(),
            )
            .ok()?;
            s.set_read_timeout(Some(POLL)).ok()?;
            Some(Box::new(s))
        }
        // Not held: see `loop_round`.
        Kind::Loop => None,
    }
}

/// `n` requests to the balancer that loops back to tether: how many were sent, and how many
/// tether cut after one hop with 508.
fn loop_round(to: Targets, n: usize) -> (u64, u64) {
    let (mut sent, mut cut) = (0, 0);
    for _ in 0..n {
        let Ok(mut s) = TcpStream::connect(to.plain) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", to.loop_host);
        if s.write_all(request.as_bytes()).is_err() {
            continue;
        }
        sent += 1;
        if read_response(&mut s) == Some(508) {
            cut += 1;
        }
    }
    (sent, cut)
}

/// True once a slow reader's connection was cut: draining what the buffers hold ends in EOF or
/// a reset, well before the whole 8 MiB response (which only an uncut connection delivers).
fn cut_while_unread(c: &mut dyn Conn) -> bool {
    closed_within(c, 4 << 20)
}

/// True once the server has closed `c` (anything it sends first is read and dropped).
fn closed(c: &mut dyn Conn) -> bool {
    closed_within(c, usize::MAX)
}

/// True when reading `c` ends (EOF or an error) before `limit` bytes; false when it would wait
/// or more than `limit` bytes came.
fn closed_within(c: &mut dyn Conn, limit: usize) -> bool {
    let mut chunk = [0u8; 65536];
    let mut read = 0usize;
    while read < limit {
        match c.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => read = read.saturating_add(n),
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
    false
}

fn run(kind: Kind, to: Targets, per_kind: usize, stop: &AtomicBool) -> KindReport {
    let mut report = KindReport {
        kind,
        opened: 0,
        cut: 0,
    };
    while !stop.load(Relaxed) {
        if matches!(kind, Kind::Loop) {
            // Nothing is held: a 508 ends the loop after one hop. A round a second.
            let (sent, cut) = loop_round(to, per_kind);
            report.opened += sent;
            report.cut += cut;
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        let mut conns: Vec<Box<dyn Conn>> = (0..per_kind).filter_map(|_| open(kind, to)).collect();
        report.opened += conns.len() as u64;
        let batch = Instant::now();
        while !conns.is_empty() && !stop.load(Relaxed) && batch.elapsed() < Duration::from_secs(30)
        {
            let before = conns.len();
            conns.retain_mut(|c| match kind {
                Kind::SlowReader if batch.elapsed() < UNREAD => true,
                Kind::SlowReader => !cut_while_unread(c.as_mut()),
                Kind::Slowloris => {
                    let _ = c.write_all(b"x");
                    !closed(c.as_mut())
                }
                _ => !closed(c.as_mut()),
            });
            report.cut += (before - conns.len()) as u64;
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    report
}
