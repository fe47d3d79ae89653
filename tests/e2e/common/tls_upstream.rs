//! TLS on both sides of tether, made at test time: certificates from `rcgen` (a CA and leaves
//! signed by it, expired or for the wrong name, or self-signed), and a real TLS upstream (OpenSSL
//! acceptor in front of the hyper test server) that records the SNI it saw, counts connections
//! and handshakes, and offers h2 by ALPN when asked to.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{
    select_next_proto, AlpnError, NameType, Ssl, SslAcceptor, SslConnector, SslMethod, SslStream,
    SslVerifyMode,
};
use openssl::x509::X509;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::sync::watch;

use super::upstream::{answer, new_state, runtime, Seen, State};

/// A certificate and its key, in PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Leaf {
    /// Writes `<stem>.crt` and `<stem>.key` into `dir`; returns (cert path, key path).
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, &self.cert).unwrap();
        std::fs::write(&k, &self.key).unwrap();
        (c, k)
    }
}

/// Leaf parameters: DNS names (SAN), the subject CN, and whether it expired last year.
fn leaf_params(names: &[&str], cn: &str, expired: bool) -> CertificateParams {
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    p
}

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// The CA certificate (PEM), for `ca_path`.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/<stem>.pem` and returns the path.
    pub fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let p = dir.join(format!("{stem}.pem"));
        std::fs::write(&p, self.pem()).unwrap();
        p
    }

    /// A leaf signed by this CA.
    pub fn issue(&self, names: &[&str], cn: &str, expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(names, cn, expired)
            .signed_by(&key, &self.issuer)
            .unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A self-signed leaf for `names`.
pub fn self_signed_leaf(names: &[&str], cn: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names, cn, false).self_signed(&key).unwrap();
    Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

#[derive(Default)]
struct TlsRecord {
    /// The SNI of every handshake that reached the server-name step (`None`: none sent).
    snis: Mutex<Vec<Option<String>>>,
    connections: AtomicUsize,
    handshakes: AtomicUsize,
    h2_connections: AtomicUsize,
    /// Each request's authority: `:authority` (h2) or `Host` (HTTP/1.1).
    authorities: Mutex<Vec<String>>,
}

/// A running TLS upstream. It answers like [`super::Upstream`] (its name, `x-endpoint`).
pub struct TlsUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    record: Arc<TlsRecord>,
    stop: Option<watch::Sender<bool>>,
}

impl TlsUpstream {
    /// Serves `leaf` on a free loopback port; offers h2 then http/1.1 by ALPN when `h2`.
    pub fn start(name: &str, leaf: &Leaf, h2: bool) -> TlsUpstream {
        Self::start_on("127.0.0.1:0", name, leaf, h2)
    }

    /// As [`TlsUpstream::start`], listening on `bind` (e.g. `[::1]:0`).
    pub fn start_on(bind: &str, name: &str, leaf: &Leaf, h2: bool) -> TlsUpstream {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_certificate(&X509::from_pem(leaf.cert.as_bytes()).unwrap())
            .unwrap();
        b.set_private_key(&openssl::pkey::PKey::private_key_from_pem(leaf.key.as_bytes()).unwrap())
            .unwrap();
        let record = Arc::new(TlsRecord::default());
        let seen = record.clone();
        b.set_servername_callback(move |ssl, _| {
            let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
            seen.snis.lock().unwrap().push(sni);
            Ok(())
        });
        let offer: &'static [u8] = if h2 {
            b"\x02h2\x08http/1.1"
        } else {
            b"\x08http/1.1"
        };
        b.set_alpn_select_callback(move |_, client| {
            select_next_proto(offer, client).ok_or(AlpnError::NOACK)
        });
        let acceptor = Arc::new(b.build());

        let std_listener = std::net::TcpListener::bind(bind).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let state = new_state();
        let (n, s, r) = (name.to_string(), state.clone(), record.clone());
        runtime().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            accept_loop(listener, acceptor, n, s, r, rx).await;
        });
        TlsUpstream {
            addr,
            state,
            record,
            stop: Some(tx),
        }
    }

    /// The SNI of each handshake so far.
    pub fn snis(&self) -> Vec<Option<String>> {
        self.record.snis.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.record.connections.load(SeqCst)
    }

    /// Handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.record.handshakes.load(SeqCst)
    }

    /// Connections that negotiated h2.
    pub fn h2_connections(&self) -> usize {
        self.record.h2_connections.load(SeqCst)
    }

    /// The authority of every request so far (`:authority` for h2, else `Host`).
    pub fn authorities(&self) -> Vec<String> {
        self.record.authorities.lock().unwrap().clone()
    }

    /// Requests seen so far, except health checks.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: Arc<SslAcceptor>,
    name: String,
    state: Arc<State>,
    record: Arc<TlsRecord>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            _ = stop.changed() => return,
        };
        record.connections.fetch_add(1, SeqCst);
        let (acceptor, name, state, record, mut stop) = (
            acceptor.clone(),
            name.clone(),
            state.clone(),
            record.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let ssl = Ssl::new(acceptor.context()).unwrap();
            let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
            if Pin::new(&mut tls).accept().await.is_err() {
                return;
            }
            record.handshakes.fetch_add(1, SeqCst);
            let h2 = tls.ssl().selected_alpn_protocol() == Some(b"h2");
            if h2 {
                record.h2_connections.fetch_add(1, SeqCst);
            }
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (name, state, record) = (name.clone(), state.clone(), record.clone());
                let authority = req.uri().authority().map(|a| a.to_string()).or_else(|| {
                    req.headers()
                        .get("host")
                        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                });
                record
                    .authorities
                    .lock()
                    .unwrap()
                    .push(authority.unwrap_or_default());
                async move { Ok::<_, Infallible>(answer(&name, &state, req).await) }
            });
            let io = TokioIo::new(tls);
            // The protocol negotiated; the connection ends with the test's stop signal.
            if h2 {
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, svc);
                tokio::select! {
                    _ = conn => {}
                    _ = stop.changed() => {}
                }
            } else {
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
                tokio::select! {
                    _ = conn => {}
                    _ = stop.changed() => {}
                }
            }
        });
    }
}

/// A TLS connection to `addr` sending `sni` (none when `None`), without verification: the
/// tests inspect the certificate rather than trust it. HTTP/1.1 only.
pub fn tls_connect(addr: SocketAddr, sni: Option<&str>) -> SslStream<std::net::TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let connector = b.build();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    connector
        .configure()
        .unwrap()
        .verify_hostname(false)
        .use_server_name_indication(sni.is_some())
        .connect(sni.unwrap_or("unnamed"), tcp)
        .unwrap()
}

/// The subject CN of the certificate `tls` was served.
pub fn served_cn(tls: &SslStream<std::net::TcpStream>) -> String {
    let cert = tls.ssl().peer_certificate().unwrap();
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| e.data().to_string().unwrap())
        .unwrap_or_default();
    cn
}

/// The CN of the certificate the listener at `addr` serves to a new handshake with `sni`.
pub fn served_certificate(addr: SocketAddr, sni: Option<&str>) -> String {
    served_cn(&tls_connect(addr, sni))
}

/// Sends one HTTP/1.1 GET on `tls` and returns the status line's code (`None` on close).
pub fn get_over(tls: &mut SslStream<std::net::TcpStream>, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let req = format!("GET {path} HTTP/1.1\r\nHost: tls.test\r\n\r\n");
    tls.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // The head, then the body by its Content-Length, so the connection is ready for the next.
    let (head_end, length) = loop {
        let n = tls.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            break (at + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = tls.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf)
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()
}
