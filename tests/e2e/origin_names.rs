//! SPEC §2 endpoint addresses by host name: a name that does not resolve is a warning, not a
//! config error, and its endpoint gets no traffic while the others serve. Every unresolvable name
//! here is under the reserved `.invalid` domain, which tether never sends to a resolver.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::ops::admin;
use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

#[test]
fn unresolvable_origin_name_is_a_warning_not_an_error() {
    let yaml = "listeners:\n  - address: 127.0.0.1:18080\n\
                pools:\n  - id: web\n    endpoints:\n\
                \x20     - { name: a, address: \"127.0.0.1:9001\" }\n\
                \x20     - { name: b, address: \"app-1.invalid:80\" }\n\
                load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n";
    let (ok, out) = config_test(yaml);
    assert!(ok, "refused:\n{out}");
    assert!(
        out.contains("warning: pools[0].endpoints[1].address: \"app-1.invalid:80\""),
        "{out}"
    );
    assert!(out.contains("configuration OK"), "{out}");

    // What does not parse is still an error, with its path.
    let (ok, out) = config_test(&yaml.replace("app-1.invalid:80", "app_1.invalid:80"));
    assert!(!ok, "accepted:\n{out}");
    assert!(out.contains("pools[0].endpoints[1].address"), "{out}");
}

#[test]
fn unresolvable_origin_gets_no_traffic_and_others_serve() {
    let a = Upstream::start("a");
    let admin_port = free_port();
    let body = format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         pools:\n  - id: web\n    endpoints:\n{}\
         \x20     - {{ name: b, address: \"app-1.invalid:80\" }}\n\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n",
        endpoints(&[&a])
    );
    let t = Tether::start(&body);
    assert!(
        t.log().contains("pools[0].endpoints[1].address"),
        "{}",
        t.log()
    );
    let c = client();
    for _ in 0..30 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!((r.status, r.endpoint()), (200, "a"), "{}", r.body);
    }

    // A reload keeps it valid and keeps b out of rotation.
    wait_for("the admin listener", LONG, || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let r = admin(admin_port, "POST", "/reload", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let status = admin(admin_port, "GET", "/status", None).json();
    let b = &status["pools"][0]["endpoints"][1];
    assert_eq!(b["address"], "app-1.invalid:80", "{b}");
    assert_eq!(b["addresses"], serde_json::json!([]), "{b}");
    assert!(
        b["health_reason"].as_str().unwrap().contains("not used"),
        "{b}"
    );
    for _ in 0..30 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!((r.status, r.endpoint()), (200, "a"), "{}", r.body);
    }
    assert_eq!(a.request_count(), 60);
}
