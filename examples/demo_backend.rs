//! Demo upstreams for `make run`: `demo_backend NAME ADDR [NAME ADDR ...]` serves, on each
//! address, a page that says which endpoint answered. `/health` answers `ok`.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn answer(name: &'static str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let body = if req.uri().path() == "/health" {
        "ok\n".to_string()
    } else {
        let cookies = req
            .headers()
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        format!(
            "hello from {name}: {} {}  (cookies seen upstream: {cookies:?})\n",
            req.method(),
            req.uri()
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert("x-endpoint", hyper::header::HeaderValue::from_static(name));
    resp
}

async fn serve(name: &'static str, addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("demo backend {name} on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let svc = service_fn(move |req| async move { Ok::<_, Infallible>(answer(name, &req)) });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || !args.len().is_multiple_of(2) {
        eprintln!("usage: demo_backend NAME ADDR [NAME ADDR ...]");
        std::process::exit(2);
    }
    let mut tasks = Vec::new();
    for pair in args.chunks(2) {
        let name: &'static str = Box::leak(pair[0].clone().into_boxed_str());
        let addr: SocketAddr = pair[1].parse().unwrap_or_else(|e| {
            eprintln!("{}: not an ip:port address: {e}", pair[1]);
            std::process::exit(2);
        });
        tasks.push(tokio::spawn(serve(name, addr)));
    }
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            eprintln!("demo backend failed: {e}");
            std::process::exit(1);
        }
    }
}
