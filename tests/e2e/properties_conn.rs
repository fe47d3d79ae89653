//! Property tests of the connection guard's stream wrapper (SPEC §3.7): whatever bytes a client
//! sends, however they are split into writes and however Pingora sizes its reads, the wrapper
//! never panics, hands over exactly the bytes within `max_request_header_bytes`, and cuts the
//! connection (after a 431) exactly when an unfinished header goes past it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tether::proxy::conn::{ConnLimits, Signals, Watch, Watched};

/// What the proxy side saw: the bytes handed over, and whether the stream ended in an error.
fn run(data: &[u8], cuts: &[usize], reads: &[usize], budget: usize) -> (Vec<u8>, bool, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let limits = ConnLimits {
            header_timeout: Duration::from_secs(60),
            keepalive: Duration::from_secs(60),
            header_bytes: budget,
        };
        let watch = Watch::http1(limits, Instant::now());
        let mut stream = Watched::new(Box::new(server), watch, Arc::new(Signals::default()));
        let (mut client_rd, mut client_wr) = tokio::io::split(client);
        let data = data.to_vec();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        bounds.push(data.len());
        bounds.sort_unstable();
        let writer = tokio::spawn(async move {
            let mut at = 0;
            for b in bounds {
                if client_wr.write_all(&data[at..b]).await.is_err() {
                    break;
                }
                at = b;
                tokio::task::yield_now().await;
            }
            let _ = client_wr.shutdown().await;
        });
        let answer = tokio::spawn(async move {
            let mut got = Vec::new();
            let _ = client_rd.read_to_end(&mut got).await;
            got
        });
        let mut seen = Vec::new();
        let mut failed = false;
        for i in 0.. {
            let mut buf = vec![0u8; reads[i % reads.len()]];
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        drop(stream);
        writer.await.unwrap();
        (seen, failed, answer.await.unwrap())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn header_budget_holds_however_the_bytes_are_split(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        reads in proptest::collection::vec(1usize..5000, 1..6),
        budget in 1usize..2500,
    ) {
        let (seen, failed, answer) = run(&data, &cuts, &reads, budget);
        let kept = data.len().min(budget);
        prop_assert_eq!(&seen[..], &data[..kept]);
        // A header that fills the budget and is still being read for is over the limit.
        prop_assert_eq!(failed, data.len() >= budget);
        if failed {
            prop_assert!(answer.starts_with(b"HTTP/1.1 431 "));
        } else {
            prop_assert!(answer.is_empty());
        }
    }
}
