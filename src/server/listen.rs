//! tether binds its listening sockets itself instead of leaving that to Pingora (SPEC §1, "Start
//! is truthful"). Pingora binds inside the service's thread, after tether has long told the
//! operator it listens; it retries a busy address for 30 s and then panics there while the rest
//! of the process keeps running. Binding here makes `listening on ADDR` true when it is logged and
//! turns a failure into one line naming the address and the OS reason, and a non-zero exit.
//!
//! The sockets reach Pingora through its table of listening sockets (`ListenFds`), the door a
//! graceful upgrade uses: Pingora's listener looks its address up there (`listen` in
//! `pingora-core/src/listeners/l4.rs`) and adopts the socket instead of binding, and a later
//! upgrade hands it on like any other.
//!
//! A socket that stops listening under Pingora (shut down from outside) leaves its accept loop
//! logging `Accept() failed` about 100,000 times a second and the proxy gone while the rest runs
//! on; Pingora never ends the service for it. So each socket is watched here, through a copy of
//! its descriptor, and a lost one ends the process.

use std::io;
use std::net::ToSocketAddrs;
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use socket2::{Domain, Socket, Type};

use super::vital;

/// Pingora's own backlog for a TCP listener (`LISTENER_BACKLOG` in `listeners/l4.rs`); it sets it
/// again on a socket it adopts, so the two agree from the first connection on.
const BACKLOG: i32 = 65535;

/// How often the listening sockets are checked: a lost one ends the process within this.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A listening address that could not be bound; its text is the one line an operator sees.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    addr: String,
    #[source]
    source: io::Error,
}

impl BindError {
    fn new(addr: &str, source: io::Error) -> Self {
        BindError {
            addr: addr.to_string(),
            source,
        }
    }
}

/// Binds `addr` as Pingora's `bind_tcp` does (first resolved address, `SO_REUSEADDR`, its
/// backlog), but once: a busy address is an error at once, not after 30 s of retries. The socket
/// is non-blocking, as the tokio listener Pingora makes of it requires.
pub fn bind(addr: &str) -> Result<Socket, BindError> {
    let fail = |e| BindError::new(addr, e);
    let sock_addr = addr
        .to_socket_addrs()
        .map_err(fail)?
        .next()
        .ok_or_else(|| {
            fail(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "the address resolves to nothing",
            ))
        })?;
    let socket = Socket::new(Domain::for_address(sock_addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.bind(&sock_addr.into()).map_err(fail)?;
    socket.listen(BACKLOG).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket)
}

/// One listening address of a service: the key Pingora's listener looks its socket up by (the
/// address exactly as given to `add_tcp`), the line that announces it, the socket once bound,
/// and, once handed to Pingora, a copy of its descriptor to watch it by.
pub struct Endpoint {
    addr: String,
    announce: String,
    socket: Option<Socket>,
    watch: Option<Socket>,
}

impl Endpoint {
    /// `announce` is logged once the address is bound (or taken over in an upgrade).
    pub fn new(addr: &str, announce: String) -> Self {
        Endpoint {
            addr: addr.to_string(),
            announce,
            socket: None,
            watch: None,
        }
    }

    /// Binds now: a fresh start does this in the foreground, before Pingora daemonizes, so
    /// `--daemon` too reports a failure on the terminal and exits non-zero.
    pub fn bind_now(&mut self) -> Result<(), BindError> {
        self.socket = Some(bind(&self.addr)?);
        Ok(())
    }

    /// Logs the announcement of an address [`bind_now`](Self::bind_now) bound.
    pub fn announce(&self) {
        if self.socket.is_some() {
            log::info!("{}", self.announce);
        }
    }

    /// Puts this address's socket into Pingora's table, unless the table already has one (the
    /// old process's, in an upgrade): the socket bound before, or one bound now.
    fn hand_over(&mut self, table: &ListenFds) -> Result<(), BindError> {
        let fail = |e| BindError::new(&self.addr, e);
        let mut fds = table.lock();
        if let Some(&inherited) = fds.get(&self.addr) {
            // Taken over from the old process; a socket of ours would be a second one.
            self.socket = None;
            // SAFETY: a descriptor in the table stays open until the listener for its address
            // adopts it, and that listener is this service's, started only after this.
            let inherited = unsafe { BorrowedFd::borrow_raw(inherited) };
            self.watch = Some(inherited.try_clone_to_owned().map_err(fail)?.into());
            log::info!("{}", self.announce);
            return Ok(());
        }
        let socket = match self.socket.take() {
            Some(bound) => bound,
            None => {
                let fresh = bind(&self.addr)?;
                log::info!("{}", self.announce);
                fresh
            }
        };
        self.watch = Some(socket.try_clone().map_err(fail)?);
        // Pingora's listener owns the descriptor from here (it adopts it with `from_raw_fd`).
        fds.add(self.addr.clone(), socket.into_raw_fd());
        Ok(())
    }

    /// The line to end the process with if this address no longer listens.
    fn lost(&self) -> Option<String> {
        let why = match self.watch.as_ref()?.is_listener() {
            Ok(true) => return None,
            Ok(false) => "the socket no longer listens".to_string(),
            Err(e) => e.to_string(),
        };
        Some(format!("listener {} lost: {why}", self.addr))
    }
}

/// Resolves, with the line to end the process with, when a watched socket stops listening;
/// never resolves once a shutdown began.
async fn first_lost(endpoints: &mut [Endpoint], mut shutdown: ShutdownWatch) -> String {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = shutdown.changed() => {
                if changed.is_ok() && !*shutdown.borrow() {
                    continue;
                }
                // Pingora closes its listeners now; the copies would hold the sockets open.
                endpoints.iter_mut().for_each(|e| e.watch = None);
                return std::future::pending().await;
            }
        }
        if let Some(line) = endpoints.iter().find_map(Endpoint::lost) {
            return line;
        }
    }
}

/// A listening service whose every address is bound, or taken over, before the service starts;
/// a bind failure ends the process with one line (an upgrade's new listeners are bound here,
/// once the old process's sockets have arrived).
pub struct BoundFirst<S> {
    inner: S,
    endpoints: Vec<Endpoint>,
}

impl<S> BoundFirst<S> {
    /// `endpoints` are the addresses `inner` listens on, with the same strings.
    pub fn new(inner: S, endpoints: Vec<Endpoint>) -> Self {
        BoundFirst { inner, endpoints }
    }
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for BoundFirst<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        let Some(table) = &fds else {
            // Pingora always passes its table on unix; without it the sockets could not be handed.
            vital::end_process(&format!(
                "service '{}' got no listening-socket table",
                self.inner.name()
            ));
        };
        for endpoint in &mut self.endpoints {
            if let Err(e) = endpoint.hand_over(table) {
                vital::end_process(&e.to_string());
            }
        }
        let watch = shutdown.clone();
        let serve = self
            .inner
            .start_service(fds, shutdown, listeners_per_fd, ready_notifier);
        tokio::select! {
            () = serve => {}
            line = first_lost(&mut self.endpoints, watch) => vital::end_process(&line),
        }
        // The service may end before the watch saw the shutdown: a copy left here would keep
        // the socket listening, and queueing connections nobody takes, until the process exits.
        self.endpoints.iter_mut().for_each(|e| e.watch = None);
    }

    super::delegate_service_but_start!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_busy_address_names_itself_and_the_os_reason() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap().to_string();
        let err = bind(&addr).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot listen on {addr}: ")),
            "{text}"
        );
        assert!(text.contains("(os error 98)"), "EADDRINUSE: {text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn an_address_not_on_this_host_is_refused_at_once() {
        // TEST-NET-1 (RFC 5737) is never a local address.
        let err = bind("192.0.2.1:8080").unwrap_err();
        assert!(
            err.to_string().contains("(os error 99)"),
            "EADDRNOTAVAIL: {err}"
        );
    }

    #[test]
    fn a_bound_socket_accepts_and_does_not_block() {
        let socket = bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap().as_socket().unwrap();
        let listener: TcpListener = socket.into();
        // Non-blocking: accept with nothing queued returns at once instead of hanging the test.
        let idle = listener.accept().unwrap_err();
        assert_eq!(idle.kind(), io::ErrorKind::WouldBlock);
        let _client = std::net::TcpStream::connect(local).unwrap();
        listener.set_nonblocking(false).unwrap();
        assert!(listener.accept().is_ok());
    }

    fn table() -> ListenFds {
        std::sync::Arc::new(parking_lot::Mutex::new(pingora::server::Fds::new()))
    }

    /// Takes the descriptor the table holds for `key` back, as Pingora's listener would.
    fn adopt(table: &ListenFds, key: &str) -> TcpListener {
        let fd = *table.lock().get(key).unwrap();
        // SAFETY: the table's descriptor is a listening socket nothing else owns in this test.
        unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
    }

    #[test]
    fn a_socket_bound_at_start_is_handed_over_under_its_address() {
        let mut e = Endpoint::new("127.0.0.1:0", "listening".into());
        e.bind_now().unwrap();
        let port = e.socket.as_ref().unwrap().local_addr().unwrap();
        let t = table();
        e.hand_over(&t).unwrap();
        let adopted = adopt(&t, "127.0.0.1:0");
        assert_eq!(adopted.local_addr().unwrap(), port.as_socket().unwrap());
    }

    #[test]
    fn an_inherited_socket_wins_and_ours_is_closed() {
        let inherited = TcpListener::bind("127.0.0.1:0").unwrap();
        let key = inherited.local_addr().unwrap().to_string();
        let t = table();
        t.lock()
            .add(key.clone(), std::os::fd::IntoRawFd::into_raw_fd(inherited));
        let mut e = Endpoint::new(&key, "listening".into());
        e.socket = Some(bind("127.0.0.1:0").unwrap());
        let ours = e.socket.as_ref().unwrap().local_addr().unwrap();
        e.hand_over(&t).unwrap();
        assert!(e.socket.is_none());
        assert!(
            std::net::TcpStream::connect(ours.as_socket().unwrap()).is_err(),
            "our own socket was closed"
        );
        assert_eq!(adopt(&t, &key).local_addr().unwrap().to_string(), key);
    }

    #[test]
    fn an_address_new_in_an_upgrade_is_bound_at_hand_over() {
        let t = table();
        let mut fresh = Endpoint::new("127.0.0.1:0", "listening".into());
        fresh.hand_over(&t).unwrap();
        let _adopted = adopt(&t, "127.0.0.1:0");

        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap().to_string();
        let err = Endpoint::new(&busy, "listening".into())
            .hand_over(&t)
            .unwrap_err();
        assert!(err.to_string().contains(&busy), "{err}");
        assert!(t.lock().get(&busy).is_none());
    }

    #[test]
    fn a_socket_shut_down_under_pingora_is_lost() {
        let t = table();
        let mut e = Endpoint::new("127.0.0.1:0", "listening".into());
        e.hand_over(&t).unwrap();
        let adopted = adopt(&t, "127.0.0.1:0");
        assert_eq!(e.lost(), None);
        socket2::SockRef::from(&adopted)
            .shutdown(std::net::Shutdown::Both)
            .unwrap();
        assert_eq!(
            e.lost().as_deref(),
            Some("listener 127.0.0.1:0 lost: the socket no longer listens")
        );
    }
}
