//! SPEC §3.8 listener certificates: re-read at every reload (SIGHUP or `POST /reload`) with no
//! upgrade and no dropped connection, a certificate that does not load refused with its path while
//! the old one keeps serving, and several certificates per listener chosen by SNI.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::common::ops::*;
use crate::common::tls_upstream::*;
use crate::common::*;

/// Tether with a plain listener (`.port`), a TLS listener (returned) whose `tls:` is `tls_yaml`,
/// and an admin listener (returned), in front of `up`.
fn start(dir: tempfile::TempDir, up: &Upstream, tls_yaml: &str) -> (Tether, u16, u16) {
    let (port, tls_port, admin_port) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "{}admin: {{ address: 127.0.0.1:{admin_port} }}\n{}",
        head(dir.path(), port).replace(
            "cookie_secret:",
            &format!("  - address: 127.0.0.1:{tls_port}\n    tls: {tls_yaml}\ncookie_secret:")
        ),
        body(up)
    );
    let t = Tether::start_with(dir, port, &yaml);
    wait_for("the TLS listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });
    (t, tls_port, admin_port)
}

fn body(up: &Upstream) -> String {
    format!(
        "pools:\n  - id: web\n    endpoints:\n{}load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n",
        endpoints(&[up])
    )
}

fn one(cert: &Path, key: &Path) -> String {
    format!(
        "{{ cert_path: {}, key_path: {} }}",
        cert.display(),
        key.display()
    )
}

fn addr(port: u16) -> std::net::SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// Sends SIGHUP and waits for the log to report `needle` once more than before.
fn hup_and_wait(t: &Tether, needle: &str) {
    let log = t.dir.path().join("tether.log");
    let before = count_in(&log, needle);
    signal(t.pid(), "HUP");
    wait_for(needle, Duration::from_secs(10), || {
        count_in(&log, needle) > before
    });
}

#[test]
fn reload_swaps_the_listener_certificate_without_dropping_a_connection() {
    let up = Upstream::start("a");
    let ca = Ca::new("tether test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca
        .issue(&["tls.test"], "first", false)
        .write(dir.path(), "live");
    let (t, tls_port, admin_port) = start(dir, &up, &one(&cert, &key));
    let pid = t.pid();

    let mut open = tls_connect(addr(tls_port), Some("tls.test"));
    assert_eq!(served_cn(&open), "first");
    assert_eq!(get_over(&mut open, "/before"), Some(200));

    // A renewal: new files at the same paths (as certbot's live/ links), then SIGHUP.
    ca.issue(&["tls.test"], "second", false)
        .write(t.dir.path(), "live");
    hup_and_wait(&t, "reloaded ");
    assert_eq!(
        served_certificate(addr(tls_port), Some("tls.test")),
        "second"
    );
    assert_eq!(
        get_over(&mut open, "/after"),
        Some(200),
        "the connection opened before the reload still serves"
    );

    // And again through the admin API.
    ca.issue(&["tls.test"], "third", false)
        .write(t.dir.path(), "live");
    let r = admin(admin_port, "POST", "/reload", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        served_certificate(addr(tls_port), Some("tls.test")),
        "third"
    );
    assert_eq!(t.pid(), pid, "no upgrade");
    assert!(
        !t.log().contains("needs a graceful upgrade"),
        "a certificate change is a reload matter:\n{}",
        t.log()
    );
}

#[test]
fn a_certificate_that_does_not_load_fails_the_reload_and_the_old_one_keeps_serving() {
    let up = Upstream::start("a");
    let ca = Ca::new("tether test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca
        .issue(&["tls.test"], "first", false)
        .write(dir.path(), "live");
    let (t, tls_port, admin_port) = start(dir, &up, &one(&cert, &key));

    // A truncated certificate file.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
    hup_and_wait(&t, "reload refused");
    assert!(
        t.log()
            .contains(&format!("listeners[1].tls.cert_path: {}", cert.display())),
        "{}",
        t.log()
    );
    assert_eq!(
        served_certificate(addr(tls_port), Some("tls.test")),
        "first"
    );
    let (ok, out) = {
        let yaml = std::fs::read_to_string(&t.config).unwrap();
        config_test(&yaml)
    };
    assert!(!ok && out.contains("listeners[1].tls.cert_path"), "{out}");

    // A certificate with another certificate's key, through the admin API.
    ca.issue(&["tls.test"], "second", false)
        .write(t.dir.path(), "live");
    let other = ca.issue(&["tls.test"], "other", false);
    std::fs::write(&key, other.key).unwrap();
    let r = admin(admin_port, "POST", "/reload", None);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("listeners[1].tls.key_path") && r.body.contains("is not the key of"),
        "{}",
        r.body
    );
    assert_eq!(
        served_certificate(addr(tls_port), Some("tls.test")),
        "first"
    );
    let c = client();
    assert_eq!(get(&c, &t.url("/"), None, &[]).status, 200, "still serving");
}

#[test]
fn sni_selects_among_several_listener_certificates() {
    let up = Upstream::start("a");
    let ca = Ca::new("tether test CA");
    let dir = tempfile::tempdir().unwrap();
    let (dc, dk) = ca
        .issue(&["default.test"], "default", false)
        .write(dir.path(), "d");
    let (sc, sk) = ca
        .issue(&["shop.test", "*.shop.test"], "shop", false)
        .write(dir.path(), "s");
    let (ac, ak) = ca.issue(&["api.test"], "api", false).write(dir.path(), "a");
    let list = format!(
        "\n      - {}\n      - {}\n      - {}",
        one(&dc, &dk),
        one(&sc, &sk),
        one(&ac, &ak)
    );
    let (t, tls_port, _) = start(dir, &up, &list);
    for (sni, cn) in [
        (Some("shop.test"), "shop"),
        (Some("www.shop.test"), "shop"),
        (Some("API.test"), "api"),
        (Some("elsewhere.test"), "default"),
        (None, "default"),
    ] {
        assert_eq!(served_certificate(addr(tls_port), sni), cn, "SNI {sni:?}");
    }
    // A verifying client that trusts the CA reaches each name.
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("www.shop.test", addr(tls_port))
        .resolve("api.test", addr(tls_port))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for host in ["www.shop.test", "api.test"] {
        let r = client
            .get(format!("https://{host}:{tls_port}/"))
            .send()
            .unwrap_or_else(|e| panic!("{host}: {e:?}\n{}", t.log()));
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn config_test_names_each_listener_certificate_by_its_yaml_path() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tether test CA");
    let (cert, key) = ca.issue(&["tls.test"], "ok", false).write(dir.path(), "ok");
    let other = ca
        .issue(&["tls.test"], "other", false)
        .write(dir.path(), "other");
    let yaml = format!(
        "{}pools:\n  - id: web\n    endpoints: [{{ name: a, address: \"127.0.0.1:1\" }}]\n\
         load_balancers: [{{ name: \"*\", default_pools: [web] }}]\n",
        head(dir.path(), free_port()).replace(
            "cookie_secret:",
            &format!(
                "  - address: 127.0.0.1:{}\n    tls:\n      - {}\n      - {{ cert_path: {}, key_path: {} }}\n      - {{ cert_path: {}, key_pth: x }}\n\
                 \x20 - address: 127.0.0.1:{}\n    tls: []\ncookie_secret:",
                free_port(),
                one(&cert, &key),
                cert.display(),
                other.1.display(),
                cert.display(),
                free_port()
            )
        )
    );
    let (ok, out) = config_test(&yaml);
    assert!(!ok);
    assert!(
        out.contains("listeners[1].tls[2].key_pth: unknown field"),
        "{out}"
    );
    let (ok, out) =
        config_test(&yaml.replace("key_pth: x", &format!("key_path: {}", key.display())));
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "listeners[1].tls[1].key_path: {} is not the key of the certificate",
            other.1.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("listeners[2].tls: needs at least one certificate"),
        "{out}"
    );
    assert!(!out.contains("tls[0]") && !out.contains("tls[2]"), "{out}");
}
