//! The benchmark's upstreams: `bench_upstream [--cert FILE --key FILE] [--delay-ms N] ADDR
//! [tls:ADDR ...]` answers every request on every address with the 3-byte body `ok\n` (after N
//! ms: the pool row's upstream, so that many requests are in flight at once), keep-alive, on one
//! thread; a `tls:` address serves HTTP/1.1 over TLS with the given certificate (OpenSSL, as
//! tether's own TLS). It is deliberately minimal so that the proxy, not the upstream, is what the
//! benchmark measures.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

async fn serve(listener: TcpListener, tls: Option<Arc<SslAcceptor>>, delay: Duration) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return answer(stream, delay).await;
            };
            let Ok(ssl) = Ssl::new(acceptor.context()) else {
                return;
            };
            let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, stream) else {
                return;
            };
            if Pin::new(&mut stream).accept().await.is_ok() {
                answer(stream, delay).await;
            }
        });
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, delay: Duration) {
    let svc = service_fn(move |_req| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

fn fail(msg: String) -> ! {
    eprintln!("{msg}");
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let (mut cert, mut key, mut delay) = (None, None, Duration::ZERO);
    while let Some(flag) = args.next_if(|a| a.starts_with("--")) {
        let value = args
            .next()
            .unwrap_or_else(|| fail(format!("{flag} needs a value")));
        match flag.as_str() {
            "--cert" => cert = Some(value),
            "--key" => key = Some(value),
            "--delay-ms" => {
                let ms = value
                    .parse()
                    .unwrap_or_else(|e| fail(format!("--delay-ms {value}: {e}")));
                delay = Duration::from_millis(ms);
            }
            _ => fail(format!("unknown option {flag}")),
        }
    }
    let addrs: Vec<(SocketAddr, bool)> = args
        .map(|a| {
            let (tls, addr) = match a.strip_prefix("tls:") {
                Some(rest) => (true, rest),
                None => (false, a.as_str()),
            };
            let addr = addr
                .parse()
                .unwrap_or_else(|e| fail(format!("{a}: not an ip:port address: {e}")));
            (addr, tls)
        })
        .collect();
    if addrs.is_empty() {
        fail(
            "usage: bench_upstream [--cert FILE --key FILE] [--delay-ms N] ADDR [tls:ADDR ...]"
                .into(),
        );
    }
    let acceptor = match (cert, key) {
        (Some(cert), Some(key)) => {
            let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
                .unwrap_or_else(|e| fail(format!("TLS: {e}")));
            b.set_certificate_chain_file(&cert)
                .unwrap_or_else(|e| fail(format!("{cert}: {e}")));
            b.set_private_key_file(&key, SslFiletype::PEM)
                .unwrap_or_else(|e| fail(format!("{key}: {e}")));
            Some(Arc::new(b.build()))
        }
        _ if addrs.iter().any(|(_, tls)| *tls) => {
            fail("tls: addresses need --cert and --key".into())
        }
        _ => None,
    };
    let mut tasks = Vec::new();
    for (addr, tls) in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| fail(format!("cannot listen on {addr}: {e}")));
        let acceptor = if tls { acceptor.clone() } else { None };
        tasks.push(tokio::spawn(serve(listener, acceptor, delay)));
    }
    for t in tasks {
        let _ = t.await;
    }
}
