//! A small authoritative DNS server on loopback UDP for the resolver tests: it answers `A`
//! queries from a table the test changes while it runs, with a TTL the test chooses; any other
//! type of a known name gets an empty answer, an unknown name NXDOMAIN. Written here (a few
//! dozen lines of RFC 1035 wire format) so the tests need no DNS server crate.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running test DNS server; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    table: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Starts a server on a free loopback UDP port answering with `ttl` seconds.
    pub fn start(ttl: u32) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let table = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (t, s, q) = (table.clone(), stop.clone(), queries.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                q.fetch_add(1, SeqCst);
                if let Some(reply) = answer(&buf[..n], &t.lock().unwrap(), ttl) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        DnsServer {
            addr,
            table,
            stop,
            queries,
            thread: Some(thread),
        }
    }

    /// From now on `name` resolves to `ips` (in this order).
    pub fn set(&self, name: &str, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().unwrap()).collect();
        self.table
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), ips);
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(SeqCst)
    }

    /// Closes the socket: queries are refused from now on.
    pub fn stop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The reply to one query, or `None` for a packet that is not one.
fn answer(query: &[u8], table: &HashMap<String, Vec<Ipv4Addr>>, ttl: u32) -> Option<Vec<u8>> {
    if query.len() < 12 || query[4..6] != [0, 1] {
        return None;
    }
    // The question: labels, then QTYPE and QCLASS.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    let name = labels.join(".");
    let found = table.get(&name);
    let ips: &[Ipv4Addr] = match (found, qtype) {
        (Some(ips), 1) => ips,
        _ => &[],
    };
    let mut out = Vec::with_capacity(question_end + ips.len() * 16);
    out.extend_from_slice(&query[0..2]); // id
    let rd = query[2] & 0x01;
    out.push(0x84 | rd); // QR, authoritative, RD as asked
    out.push(if found.is_some() { 0x80 } else { 0x83 }); // RA; NXDOMAIN for an unknown name
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    for ip in ips {
        out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]); // the question's name, A, IN
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}
