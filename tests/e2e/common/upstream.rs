//! Real upstream HTTP servers on ephemeral loopback ports that record what they receive.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One shared runtime for every upstream of a test binary.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// A request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) health: AtomicU16,
    /// When not 0, the status of every answer but `/health` (see [`Upstream::set_status`]).
    status: AtomicU16,
    pub(super) requests: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    /// Connections accepted and not yet closed.
    open: AtomicUsize,
}

/// A fresh record whose `/health` answers 200, for servers built on [`answer`].
pub(super) fn new_state() -> Arc<State> {
    Arc::new(State {
        health: AtomicU16::new(200),
        ..State::default()
    })
}

/// A running upstream. It answers every path with its name (and header `x-endpoint`), and
/// `/health` with the status set by [`Upstream::set_health`] (200 at first). `/status/<code>`
/// answers with that status, `/slow/<ms>` after that many milliseconds; `/echo` reads the whole
/// request body first and answers `got <n>`; `/big/<n>` answers with `n` bytes.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Option<watch::Sender<bool>>,
}

impl Upstream {
    /// Starts an upstream on a free loopback port.
    pub fn start(name: &str) -> Upstream {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap())
    }

    /// Starts an upstream on `addr` (port 0 picks a free one).
    pub fn start_on(name: &str, addr: SocketAddr) -> Upstream {
        let state = Arc::new(State {
            health: AtomicU16::new(200),
            ..State::default()
        });
        let (addr, stop) = serve(addr, name, state.clone());
        Upstream {
            name: name.to_string(),
            addr,
            state,
            stop: Some(stop),
        }
    }

    /// Closes the listener and every open connection: the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        // Wait until the port really refuses, so a test does not race the shutdown.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::net::TcpStream::connect(self.addr).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "upstream {} did not stop",
                self.name
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Starts serving again on the same port after [`Upstream::stop`], keeping its records.
    pub fn restart(&mut self) {
        let (_, stop) = serve(self.addr, &self.name, self.state.clone());
        self.stop = Some(stop);
    }

    pub fn set_health(&self, status: u16) {
        self.state.health.store(status, SeqCst);
    }

    /// Every answer except `/health` gets `status` (its body unchanged); 0 goes back to what
    /// the path says. An app server that answers 503 while it restarts, its monitor still green.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, SeqCst);
    }

    /// Requests seen so far, except health checks.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(SeqCst)
    }

    /// TCP connections open now (accepted and not yet closed by either side).
    pub fn open_connections(&self) -> usize {
        self.state.open.load(SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
    }
}

/// Binds `addr` and serves on the shared runtime until the returned sender says stop.
fn serve(addr: SocketAddr, name: &str, state: Arc<State>) -> (SocketAddr, watch::Sender<bool>) {
    let std_listener = std::net::TcpListener::bind(addr).expect("bind upstream");
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(false);
    let name = name.to_string();
    runtime().spawn(async move {
        let listener = TcpListener::from_std(std_listener).expect("tokio listener");
        accept_loop(listener, name, state, rx).await;
    });
    (addr, tx)
}

async fn accept_loop(
    listener: TcpListener,
    name: String,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            _ = stop.changed() => return,
        };
        state.connections.fetch_add(1, SeqCst);
        state.open.fetch_add(1, SeqCst);
        let (name, state, mut stop) = (name.clone(), state.clone(), stop.clone());
        tokio::spawn(async move {
            let _open = Open(state.clone());
            let svc = service_fn(move |req| {
                let (name, state) = (name.clone(), state.clone());
                async move { Ok::<_, Infallible>(answer(&name, &state, req).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Counts a connection as open until its task ends.
struct Open(Arc<State>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, SeqCst);
    }
}

pub(super) async fn answer(
    name: &str,
    state: &State,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/health" {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"health\n")));
        *resp.status_mut() = hyper::StatusCode::from_u16(state.health.load(SeqCst)).unwrap();
        return resp;
    }
    let path = req.uri().path().to_string();
    let seen = Seen {
        method: req.method().to_string(),
        path: path.clone(),
        headers: req.headers().clone(),
    };
    state.requests.lock().unwrap().push(seen);
    let mut resp = respond(name, &path, req).await;
    let forced = state.status.load(SeqCst);
    if forced != 0 {
        *resp.status_mut() = hyper::StatusCode::from_u16(forced).unwrap();
    }
    resp
}

/// The answer to a request for `path` (not `/health`), as the [`Upstream`] docs describe.
async fn respond(name: &str, path: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if path == "/echo" {
        use http_body_util::BodyExt;
        return match req.into_body().collect().await {
            Ok(body) => Response::new(Full::new(Bytes::from(format!(
                "got {}",
                body.to_bytes().len()
            )))),
            Err(_) => Response::new(Full::new(Bytes::from_static(b"body broken"))),
        };
    }
    if let Some(n) = path.strip_prefix("/big/") {
        return Response::new(Full::new(Bytes::from(vec![b'x'; n.parse().unwrap()])));
    }
    let mut resp = Response::new(Full::new(Bytes::from(name.to_string())));
    if let Some(code) = path.strip_prefix("/status/") {
        *resp.status_mut() = hyper::StatusCode::from_u16(code.parse().unwrap()).unwrap();
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(std::time::Duration::from_millis(ms.parse().unwrap())).await;
    }
    resp.headers_mut()
        .insert("x-endpoint", name.parse().unwrap());
    resp
}
