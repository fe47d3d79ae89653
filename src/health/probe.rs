//! One health check against one endpoint. Each check type (`monitors[].type`) is a [`Probe`]:
//! `http` and `https` use Pingora's own HTTP/1 client, so a check connects, speaks TLS and
//! parses responses exactly as proxied requests do; `tcp` is a plain connect. Every check opens a
//! fresh connection: a pooled one could hide a listener that no longer accepts.

use std::net::SocketAddr;

use async_trait::async_trait;

use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;

use super::monitor::{CheckFailure, MonitorSpec, BODY_LIMIT};
use crate::config::MonitorKind;
use crate::tls::origin::{self, Origin};

/// What one check is run against.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The address to connect to (the endpoint's, or its IP with the monitor's `port`).
    pub addr: SocketAddr,
    /// The endpoint's `Host` override, if any.
    pub endpoint_host: Option<&'a str>,
    /// How the endpoint is reached over TLS, for `https` checks.
    pub origin: &'a Origin,
}

/// One check type. A new type is a `Probe` plus its `MonitorKind` variant, chosen in
/// [`Prober::probe_for`]; judging answers and counting streaks are shared (`monitor`).
#[async_trait]
pub trait Probe: Send + Sync {
    /// Checks `target` once as `spec` says; the caller bounds it by `spec.timeout`. `Ok`
    /// carries what passed, for the log line ("got 200", "connected").
    async fn probe(&self, spec: &MonitorSpec, target: Target<'_>) -> Result<String, CheckFailure>;
}

/// `tcp`: the endpoint accepts a connection.
struct TcpConnect;

#[async_trait]
impl Probe for TcpConnect {
    async fn probe(&self, _: &MonitorSpec, target: Target<'_>) -> Result<String, CheckFailure> {
        tokio::net::TcpStream::connect(target.addr)
            .await
            .map(|_| "connected".to_string())
            .map_err(|e| io("connect", e))
    }
}

/// `http` and `https`: a request whose answer `spec` judges.
struct HttpRequest {
    http: Connector,
}

#[async_trait]
impl Probe for HttpRequest {
    async fn probe(&self, spec: &MonitorSpec, t: Target<'_>) -> Result<String, CheckFailure> {
        self.http_check(spec, t.addr, t.endpoint_host, t.origin)
            .await
    }
}

/// Runs checks; one per health service, shared by all its concurrent checks.
pub struct Prober {
    tcp: TcpConnect,
    http: HttpRequest,
}

impl Default for Prober {
    fn default() -> Self {
        Prober {
            tcp: TcpConnect,
            http: HttpRequest {
                http: Connector::new(None),
            },
        }
    }
}

fn io(what: &str, e: impl std::fmt::Display) -> CheckFailure {
    CheckFailure::Io(format!("{what}: {}", e.to_string().trim()))
}

/// A Pingora error as its type and reason, without the chain that makes lines long: a TLS
/// failure's reason is its context (OpenSSL's words); others', their root cause.
fn pingora(what: &str, e: &pingora::Error) -> CheckFailure {
    let kind = e.etype().as_str();
    let tls = matches!(
        e.etype(),
        pingora::ErrorType::TLSHandshakeFailure | pingora::ErrorType::InvalidCert
    );
    match (&e.context, &e.cause) {
        (Some(context), _) if tls => {
            CheckFailure::Io(format!("{what}: {kind} ({})", context.as_str()))
        }
        (_, Some(_)) => CheckFailure::Io(format!("{what}: {kind} ({})", e.root_cause())),
        _ => CheckFailure::Io(format!("{what}: {kind}")),
    }
}

impl Prober {
    /// Checks the endpoint at `addr` (whose Host override is `endpoint_host`) as `spec` says,
    /// within `spec.timeout`. An `https` check verifies, names (SNI) and trusts exactly as
    /// proxied requests to the endpoint do (`origin`, SPEC §3.8). `Ok` carries what passed, for
    /// the log line ("got 200").
    pub async fn check(
        &self,
        spec: &MonitorSpec,
        addr: SocketAddr,
        endpoint_host: Option<&str>,
        origin: &Origin,
    ) -> Result<String, CheckFailure> {
        let target = Target {
            addr: spec.target(addr),
            endpoint_host,
            origin,
        };
        let run = self.probe_for(spec.kind).probe(spec, target);
        tokio::time::timeout(spec.timeout, run)
            .await
            .unwrap_or(Err(CheckFailure::Timeout(spec.timeout)))
    }

    /// Checks each of an endpoint's `addrs` in order, as [`Prober::check`], until one passes;
    /// the last failure otherwise.
    pub async fn check_any(
        &self,
        spec: &MonitorSpec,
        addrs: &[SocketAddr],
        endpoint_host: Option<&str>,
        origin: &Origin,
    ) -> Result<String, CheckFailure> {
        let mut last = Err(CheckFailure::Io("no address to check".into()));
        for &addr in addrs {
            last = self.check(spec, addr, endpoint_host, origin).await;
            if last.is_ok() {
                break;
            }
        }
        last
    }

    /// The probe of a check type.
    fn probe_for(&self, kind: MonitorKind) -> &dyn Probe {
        match kind {
            MonitorKind::Tcp => &self.tcp,
            MonitorKind::Http | MonitorKind::Https => &self.http,
        }
    }
}

impl HttpRequest {
    async fn http_check(
        &self,
        spec: &MonitorSpec,
        target: SocketAddr,
        endpoint_host: Option<&str>,
        origin: &Origin,
    ) -> Result<String, CheckFailure> {
        let host = spec
            .host
            .as_deref()
            .or(endpoint_host)
            .map_or_else(|| target.to_string(), str::to_string);
        // A certificate the proxy would refuse fails the check too: otherwise the monitor would
        // call healthy an endpoint that no request can reach. Accept-any only with verify: false.
        let mut peer = origin.peer_for(target, spec.kind == MonitorKind::Https, spec.timeout);
        peer.options.read_timeout = Some(spec.timeout);

        let (mut session, _) = self
            .http
            .get_http_session(&peer)
            .await
            .map_err(|e| pingora("connect", &e))?;
        if let Some(e) = origin::name_refused(Some(session.digest())) {
            return Err(pingora("connect", &e));
        }
        let mut req = RequestHeader::build(spec.method.as_str(), spec.path.as_bytes(), None)
            .map_err(|e| io("request", e))?;
        let request = |e| io("request", e);
        req.insert_header("host", host.as_str()).map_err(request)?;
        if !spec
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
        {
            req.insert_header("user-agent", "tether-health-check")
                .map_err(request)?;
        }
        req.insert_header("connection", "close").map_err(request)?;
        for (name, value) in &spec.headers {
            req.append_header(name.clone(), value.as_str())
                .map_err(request)?;
        }
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| pingora("send", &e))?;
        session
            .finish_body()
            .await
            .map_err(|e| pingora("send", &e))?;
        session
            .read_response()
            .await
            .map_err(|e| pingora("response", &e))?;
        let status = session.get_status().map_or(0, |s| s.as_u16());
        let mut body = Vec::new();
        if !spec.expected_body.is_empty() && spec.method != "HEAD" {
            while body.len() < BODY_LIMIT {
                match session.read_body_ref().await {
                    Ok(Some(chunk)) => body.extend_from_slice(chunk),
                    Ok(None) => break,
                    Err(e) => return Err(pingora("response body", &e)),
                }
            }
        }
        spec.judge(status, &body).map(|()| format!("got {status}"))
    }
}
