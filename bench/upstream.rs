//! The benchmark's upstreams: `bench_upstream ADDR [ADDR ...]` answers every request on every
//! address with the 3-byte body `ok\n`, keep-alive, on one thread. It is deliberately minimal so
//! that the proxy, not the upstream, is what the benchmark measures.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addrs: Vec<SocketAddr> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse().unwrap_or_else(|e| {
                eprintln!("{a}: not an ip:port address: {e}");
                std::process::exit(2);
            })
        })
        .collect();
    if addrs.is_empty() {
        eprintln!("usage: bench_upstream ADDR [ADDR ...]");
        std::process::exit(2);
    }
    let mut tasks = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr).await.unwrap_or_else(|e| {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        });
        tasks.push(tokio::spawn(serve(listener)));
    }
    for t in tasks {
        let _ = t.await;
    }
}
