//! `access_log.format: json`: one JSON object per request line, with the fields README documents.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// Every field README's "Access log" table lists.
const DOCUMENTED: &[&str] = &[
    "@timestamp",
    "http.request.id",
    "client.ip",
    "source.ip",
    "url.domain",
    "http.request.method",
    "url.path",
    "http.response.status_code",
    "http.request.body.bytes",
    "http.response.body.bytes",
    "event.duration",
    "tether.balancer",
    "tether.pool",
    "tether.endpoint",
    "destination.address",
    "tether.affinity",
    "tether.upstream.connect_ms",
    "tether.upstream.reused",
    "tether.upstream.response_ms",
    "tether.total_ms",
];

fn json_lines(t: &Tether) -> Vec<Value> {
    t.log()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn json_access_log_line_parses_with_the_documented_fields() {
    let up = Upstream::start("web-1");
    let t = Tether::start(&format!(
        "access_log:\n  format: json\npools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: shop.example\n    default_pools: [web]\n    session_affinity: cookie\n",
        endpoints(&[&up])
    ));
    let c = client();
    // A path and Host a client controls, with a quote and a backslash in them.
    let resp = c
        .post(t.url("/cart/%22x%5C?item=a\"b"))
        .header("host", "shop.example")
        .body("0123456789")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body_len = resp.text().unwrap().len();
    wait_for("one JSON access line", Duration::from_secs(5), || {
        !json_lines(&t).is_empty()
    });
    let lines = json_lines(&t);
    assert_eq!(lines.len(), 1, "{}", t.log());
    let line = &lines[0];
    for field in DOCUMENTED {
        assert!(line.get(field).is_some(), "{field} missing in {line}");
    }
    assert_eq!(line["http.request.method"], "POST");
    assert_eq!(line["url.domain"], "shop.example");
    assert_eq!(line["url.path"], "/cart/%22x%5C");
    assert_eq!(line["url.query"], "item=a%22b");
    assert_eq!(line["http.response.status_code"], 200);
    assert_eq!(line["http.request.body.bytes"], 10);
    assert_eq!(line["http.response.body.bytes"], body_len);
    assert_eq!(line["client.ip"], "127.0.0.1");
    assert_eq!(line["tether.balancer"], "shop.example");
    assert_eq!(line["tether.pool"], "web");
    assert_eq!(line["tether.endpoint"], "web-1");
    assert_eq!(line["destination.address"], up.addr.to_string());
    assert_eq!(line["tether.affinity"], "new");
    assert!(line["tether.upstream.connect_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(line["http.request.id"].as_str().unwrap().len(), 32);
    assert!(line["@timestamp"].as_str().unwrap().ends_with('Z'));
    // No text access line alongside.
    assert!(!t.log().contains(" access]"), "{}", t.log());
}

#[test]
fn json_access_log_escapes_what_the_client_sent() {
    let up = Upstream::start("web-1");
    let t = Tether::start(&format!(
        "access_log: {{ format: json }}\npools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        endpoints(&[&up])
    ));
    // A Host with a quote and a brace: it must stay a string value, never forge a field.
    let host = "evil\",\"tether.endpoint\":\"forged";
    let status = raw_status(
        t.addr(),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, Some(200));
    wait_for("one JSON access line", Duration::from_secs(5), || {
        !json_lines(&t).is_empty()
    });
    let line = &json_lines(&t)[0];
    assert_eq!(line["url.domain"], host);
    assert_eq!(line["tether.endpoint"], "web-1");
}
