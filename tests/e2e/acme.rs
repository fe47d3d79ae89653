//! SPEC §3.11 automatic certificates, against a real ACME directory (Debian's pebble, offline):
//! issued through HTTP-01 and TLS-ALPN-01 and served for the right names, kept across a restart
//! without a new order, kept while the directory is down, renewed under load without a dropped
//! connection, and shared by three instances through Redis with one order.

#![allow(clippy::unwrap_used)]

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::X509;

use crate::common::ops::admin;
use crate::common::pebble::*;
use crate::common::*;

const NAMES: [&str; 2] = ["shop.tether.test", "www.shop.tether.test"];

/// The ports one tether listens on.
#[derive(Clone, Copy)]
struct Ports {
    http: u16,
    tls: u16,
    admin: u16,
}

impl Ports {
    fn free() -> Ports {
        Ports {
            http: free_port(),
            tls: free_port(),
            admin: free_port(),
        }
    }
}

/// A config with a plain listener (when `plain`), an ACME TLS listener for [`NAMES`] whose extra
/// `tls:` lines are `tls_extra`, an admin listener, `up` behind `*` with `always_use_https`
/// (so a validation that reached routing would get a 301), and `tail` appended.
fn config(
    dir: &Path,
    p: Ports,
    plain: bool,
    pebble: &Pebble,
    tls_extra: &str,
    up: &Upstream,
    tail: &str,
) -> String {
    let plain = match plain {
        true => format!("  - address: 127.0.0.1:{}\n", p.http),
        false => String::new(),
    };
    format!(
        "server:\n  pid_file: {d}/tether.pid\n  upgrade_sock: {d}/upgrade.sock\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n\
         listeners:\n{plain}  - address: 127.0.0.1:{tls}\n    tls:\n{tls_extra}      acme:\n        domains: [{names}]\n        email: ops@tether.test\n\
         \x20       directory: {directory}\n        ca_path: {ca}\n        storage: {d}/acme\n\
         admin: {{ address: 127.0.0.1:{admin} }}\n\
         cookie_secret: \"{SECRET}\"\n{body}    always_use_https: true\n{tail}",
        d = dir.display(),
        tls = p.tls,
        names = NAMES.join(", "),
        directory = pebble.directory(),
        ca = pebble.ca_path.display(),
        admin = p.admin,
        body = one_pool(&[up], ""),
    )
}

/// Starts tether on `yaml` in `dir`, waiting for the listener at `port`.
fn start(dir: tempfile::TempDir, port: u16, yaml: &str) -> Tether {
    Tether::start_with(dir, port, yaml)
}

/// Waits until 127.0.0.1:`port` serves, for [`NAMES`], a certificate issued under `root`.
fn wait_for_issued(t: &Tether, port: u16, root: &X509, within: Duration) -> X509 {
    let mut served = None;
    wait_for("a certificate from pebble", within, || {
        served = served_cert(port, NAMES[0]).filter(|c| issuer_cn(c).contains("Pebble"));
        assert!(
            !t.log().contains("order for"),
            "an order failed:\n{}",
            t.log()
        );
        served.is_some()
    });
    let cert = served.unwrap();
    verified(port, root, NAMES[1]);
    cert
}

/// A handshake with `sni` that verifies the chain up to `root` and the name: the certificate is
/// one a client trusting pebble's root accepts.
fn verified(port: u16, root: &X509, sni: &str) {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.cert_store_mut().add_cert(root.clone()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    b.build()
        .connect(sni, tcp)
        .unwrap_or_else(|e| panic!("{sni} does not verify under pebble's root: {e}"));
}

/// An HTTPS request for `host` through tether's TLS listener, trusting pebble's root.
fn https_get(port: u16, host: &str, root: &X509) -> u16 {
    let c = reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&root.to_der().unwrap()).unwrap())
        .resolve(host, ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    c.get(format!("https://{host}:{port}/"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn http01_issues_a_pebble_certificate_that_tether_serves_for_its_names() {
    let up = Upstream::start("a");
    let p = Ports::free();
    let pebble = Pebble::start(p.http, p.tls, None);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(dir.path(), p, true, &pebble, "", &up, "");
    let t = start(dir, p.http, &yaml);
    // Until issued, an ACME listener without cert_path has nothing to present.
    let root = pebble.root();
    let cert = wait_for_issued(&t, p.tls, &root, Duration::from_secs(60));
    assert_eq!(san_names(&cert), NAMES.to_vec());
    assert_eq!(pebble.orders(), 1, "{}", pebble.log());
    assert_eq!(https_get(p.tls, NAMES[1], &root), 200);
    let log = t.log();
    assert!(log.contains("answered an HTTP-01 validation"), "{log}");
    assert!(log.contains("serves the new certificate"), "{log}");
    // A validation request is answered before always_use_https: plain HTTP for anything else
    // is still redirected.
    assert_eq!(get(&client(), &t.url("/"), Some(NAMES[0]), &[]).status, 301);
    let status = admin(p.admin, "GET", "/status", None).json();
    let certs = status["certificates"].as_array().unwrap();
    let acme = certs.iter().find(|c| c["source"] == "acme").unwrap();
    assert_eq!(acme["names"], serde_json::json!(NAMES));
    assert!(
        acme["issuer"].as_str().unwrap().contains("Pebble"),
        "{acme}"
    );
    assert_eq!(status["acme"][0]["state"], "valid", "{status}");
    let page = admin(p.admin, "GET", "/", None).body;
    assert!(page.contains("<h2>Certificates</h2>"), "{page}");
    assert!(
        page.contains(&format!("{}, {}", NAMES[0], NAMES[1])) && page.contains("Pebble"),
        "{page}"
    );
    let metrics = admin(p.admin, "GET", "/metrics", None).body;
    let line = format!(
        "tether_certificate_expiry_timestamp_seconds{{name=\"{}\"}}",
        NAMES[0]
    );
    assert!(metrics.contains(&line), "{metrics}");
    assert!(
        metrics.contains("tether_acme_order_failures_total 0"),
        "{metrics}"
    );
    // Stored for the next start: directory 0700, files 0600.
    let storage = t.dir.path().join("acme");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&storage), 0o700);
    for f in std::fs::read_dir(&storage).unwrap() {
        assert_eq!(mode(&f.unwrap().path()), 0o600);
    }
}

#[test]
fn a_restart_serves_the_stored_certificate_without_a_new_order() {
    let up = Upstream::start("a");
    let p = Ports::free();
    let pebble = Pebble::start(p.http, p.tls, None);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(dir.path(), p, true, &pebble, "", &up, "");
    let t = start(dir, p.http, &yaml);
    let root = pebble.root();
    let first = wait_for_issued(&t, p.tls, &root, Duration::from_secs(60));
    let dir = keep_dir(t);
    let t = start(dir, p.http, &yaml);
    // The first handshake already gets it: the listeners wait until the stored one is served.
    let served = served_cert(p.tls, NAMES[0]).expect("a certificate at the first handshake");
    assert_eq!(served.to_der().unwrap(), first.to_der().unwrap());
    assert!(
        t.log().contains("serves the stored certificate"),
        "{}",
        t.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pebble.orders(), 1, "no second order:\n{}", pebble.log());
}

#[test]
fn tls_alpn01_issues_a_certificate_through_the_tls_listener_alone() {
    let up = Upstream::start("a");
    let p = Ports::free();
    // No plain listener: pebble's HTTP-01 port leads nowhere, only TLS-ALPN-01 can succeed.
    let pebble = Pebble::start(p.http, p.tls, None);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(dir.path(), p, false, &pebble, "", &up, "");
    let t = start(dir, p.tls, &yaml);
    let root = pebble.root();
    let cert = wait_for_issued(&t, p.tls, &root, Duration::from_secs(60));
    assert_eq!(san_names(&cert), NAMES.to_vec());
    assert!(
        t.log().contains("answered a TLS-ALPN-01 validation"),
        "{}",
        t.log()
    );
    assert_eq!(https_get(p.tls, NAMES[0], &root), 200);
}

/// Ends `t` and hands back its directory (config, log, storage) for the next start.
fn keep_dir(mut t: Tether) -> tempfile::TempDir {
    let dir = std::mem::replace(&mut t.dir, tempfile::tempdir().unwrap());
    drop(t);
    dir
}

/// Writes into `storage` the bundle tether stores for [`NAMES`]: a self-signed certificate from
/// 2020 to 2028, past two thirds of its life (renewal due); returns its DER.
fn store_due_certificate(storage: &Path) -> Vec<u8> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2028, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(storage)
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(storage.join(format!("cert-{}.pem", NAMES[0])))
        .unwrap();
    use std::io::Write;
    write!(f, "{}{}", key.serialize_pem(), cert.pem()).unwrap();
    cert.der().to_vec()
}

#[test]
fn a_directory_that_is_down_keeps_the_old_certificate_and_logs_the_failure() {
    let up = Upstream::start("a");
    let p = Ports::free();
    // Only its config is used: the directory tether is given is a port nobody listens on.
    let mut pebble = Pebble::start(p.http, p.tls, None);
    pebble.stop();
    let dir = tempfile::tempdir().unwrap();
    let old = store_due_certificate(&dir.path().join("acme"));
    let yaml = config(dir.path(), p, true, &pebble, "", &up, "");
    let t = start(dir, p.http, &yaml);
    wait_for("the failed renewal logged", Duration::from_secs(20), || {
        t.log().contains("failed (1 in a row)")
    });
    let log = t.log();
    assert!(log.contains("serves the stored certificate"), "{log}");
    assert!(log.contains("keeping the current certificate"), "{log}");
    assert!(
        log.contains(&format!("127.0.0.1:{}", pebble.port)),
        "the log names the directory: {log}"
    );
    let served = served_cert(p.tls, NAMES[0]).expect("still serving");
    assert_eq!(served.to_der().unwrap(), old);
    let metrics = admin(p.admin, "GET", "/metrics", None).body;
    assert!(
        metrics.contains("tether_acme_order_failures_total 1"),
        "{metrics}"
    );
    let status = admin(p.admin, "GET", "/status", None).json();
    assert_eq!(status["acme"][0]["state"], "failing", "{status}");
    assert!(status["acme"][0]["retry_at"].as_u64().is_some(), "{status}");
}

/// HTTPS requests to [`NAMES`]`[0]` through 127.0.0.1:`port`, trusting `root`, until stopped:
/// a new connection (and handshake) per request when `fresh`, else one kept-alive connection.
fn https_loop(
    port: u16,
    root: &X509,
    fresh: bool,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<(usize, Vec<String>)>,
) {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut b = reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&root.to_der().unwrap()).unwrap())
        .resolve(NAMES[0], ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(10));
    if fresh {
        b = b.pool_max_idle_per_host(0);
    }
    let c = b.build().unwrap();
    let url = format!("https://{}:{port}/", NAMES[0]);
    let handle = std::thread::spawn(move || {
        let (mut ok, mut failures) = (0, Vec::new());
        for i in 0..20_000 {
            if flag.load(SeqCst) {
                break;
            }
            match c.get(&url).send().map(|r| r.status().as_u16()) {
                Ok(200) => ok += 1,
                other => failures.push(format!("request {i}: {other:?}")),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (ok, failures)
    });
    (stop, handle)
}

#[test]
fn a_short_lived_certificate_is_renewed_under_load_without_a_failed_request() {
    let up = Upstream::start("a");
    let p = Ports::free();
    // Valid 15 s: renewed at two thirds, 10 s after issuance.
    let pebble = Pebble::start(p.http, p.tls, Some(15));
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(dir.path(), p, true, &pebble, "", &up, "");
    let t = start(dir, p.http, &yaml);
    let root = pebble.root();
    let first = wait_for_issued(&t, p.tls, &root, Duration::from_secs(60));
    let loops = [
        https_loop(p.tls, &root, true),
        https_loop(p.tls, &root, false),
    ];
    wait_for("the renewed certificate", Duration::from_secs(30), || {
        served_cert(p.tls, NAMES[0]).is_some_and(|c| {
            c.serial_number().to_bn().unwrap() != first.serial_number().to_bn().unwrap()
        })
    });
    // Requests keep going on the new certificate, on the old connection and on new ones.
    std::thread::sleep(Duration::from_millis(500));
    for (stop, handle) in loops {
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (ok, failures) = handle.join().unwrap();
        assert!(failures.is_empty(), "{failures:?}\n{}", t.log());
        assert!(ok > 20, "only {ok} requests");
    }
    assert!(pebble.orders() >= 2, "{}", pebble.log());
    verified(p.tls, &root, NAMES[0]);
}

#[test]
fn three_instances_on_one_redis_serve_one_certificate_from_one_order() {
    let redis = crate::common::redis::Redis::start();
    let up = Upstream::start("a");
    let ports = [Ports::free(), Ports::free(), Ports::free()];
    // Pebble validates on the first instance's ports whichever instance ordered: the answer is
    // shared through Redis.
    let pebble = Pebble::start(ports[0].http, ports[0].tls, None);
    let state = format!(
        "state:\n  store: redis\n  redis:\n    url: \"{}\"\n    key_prefix: \"acme-test:\"\n    timeout_ms: 500\n",
        redis.url()
    );
    // Started together, so that all three find no certificate and race for the order lock.
    let configs: Vec<(tempfile::TempDir, String)> = ports
        .iter()
        .map(|p| {
            let dir = tempfile::tempdir().unwrap();
            let yaml = config(dir.path(), *p, true, &pebble, "", &up, &state);
            (dir, yaml)
        })
        .collect();
    let instances: Vec<Tether> = std::thread::scope(|s| {
        let started: Vec<_> = configs
            .into_iter()
            .zip(&ports)
            .map(|((dir, yaml), p)| s.spawn(move || start(dir, p.http, &yaml)))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let root = pebble.root();
    let first = wait_for_issued(&instances[0], ports[0].tls, &root, Duration::from_secs(60));
    for (t, p) in instances.iter().zip(&ports) {
        wait_for(
            "every instance to serve it",
            Duration::from_secs(10),
            || {
                served_cert(p.tls, NAMES[0])
                    .is_some_and(|c| c.to_der().unwrap() == first.to_der().unwrap())
            },
        );
        assert!(!t.log().contains("order for"), "{}", t.log());
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pebble.orders(), 1, "{}", pebble.log());
    let ordered = instances
        .iter()
        .filter(|t| t.log().contains("serves the new certificate"))
        .count();
    assert_eq!(ordered, 1, "exactly one instance ordered");
    // Pebble validates on the first instance only, whichever ordered.
    assert!(
        instances[0]
            .log()
            .contains("answered an HTTP-01 validation"),
        "{}",
        instances[0].log()
    );
    assert!(redis
        .command(&["EXISTS", &format!("acme-test:acme:cert-{}.pem", NAMES[0])])
        .unwrap()
        .contains('1'));
}

#[test]
fn acme_config_errors_name_their_yaml_path_and_a_lone_tls_alpn_setup_warns() {
    let dir = tempfile::tempdir().unwrap();
    let listener =
        |tls: &str| {
            head(dir.path(), free_port()).replace(
            "cookie_secret:",
            &format!("  - address: 127.0.0.1:{}\n    tls: {tls}\ncookie_secret:", free_port()),
        ) + "pools:\n  - id: web\n    endpoints:\n      - { name: a, address: \"127.0.0.1:9\" }\n\
             load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n"
        };
    let (ok, out) = config_test(&listener(
        "{ acme: { domains: ['*.shop.test', shop], directory: 'http://x/dir', ca_path: /nonexistent } }",
    ));
    assert!(!ok, "{out}");
    for want in [
        "listeners[1].tls.acme.domains[0]: *.shop.test is a wildcard",
        "listeners[1].tls.acme.domains[1]: shop is not a fully qualified DNS name",
        "listeners[1].tls.acme.directory: http://x/dir is not an https:// URL",
        "listeners[1].tls.acme.ca_path: /nonexistent cannot be read",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (ok, out) = config_test(&listener("{ cert_path: /etc/hostname }"));
    assert!(!ok && out.contains("key_path"), "{out}");
    // Valid: ACME alone on the TLS listener of an instance sharing Redis warns about TLS-ALPN-01.
    let tls_only = listener("{ acme: { domains: [shop.tether.test] } }");
    let plain_line = tls_only
        .lines()
        .find(|l| l.starts_with("  - address:"))
        .unwrap()
        .to_string();
    let yaml = tls_only.replacen(&format!("{plain_line}\n"), "", 1)
        + "state:\n  store: redis\n  redis: { url: \"redis://127.0.0.1:9\" }\n";
    let (ok, out) = config_test(&yaml);
    assert!(ok, "{out}");
    assert!(
        out.contains("listeners[0].tls.acme: no plain-HTTP listener"),
        "{out}"
    );
}

#[test]
fn a_directory_that_forgot_the_account_gets_a_new_one_at_the_next_renewal() {
    let up = Upstream::start("a");
    let p = Ports::free();
    let mut pebble = Pebble::start(p.http, p.tls, Some(15));
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(dir.path(), p, true, &pebble, "", &up, "");
    let t = start(dir, p.http, &yaml);
    let first = wait_for_issued(&t, p.tls, &pebble.root(), Duration::from_secs(60));
    // Pebble keeps nothing across a restart: the stored account is unknown to it now.
    pebble.restart();
    let root = pebble.root();
    let mut renewed = None;
    wait_for(
        "a renewal under a new account",
        Duration::from_secs(30),
        || {
            renewed = served_cert(p.tls, NAMES[0])
                .filter(|c| c.to_der().unwrap() != first.to_der().unwrap());
            renewed.is_some()
        },
    );
    verified(p.tls, &root, NAMES[0]);
    assert_eq!(t.log().matches("created account").count(), 2, "{}", t.log());
    assert!(
        t.log().contains("accountDoesNotExist") || t.log().contains("account"),
        "{}",
        t.log()
    );
}

#[test]
fn a_restart_on_redis_serves_the_shared_certificate_from_the_first_handshake() {
    let redis = crate::common::redis::Redis::start();
    let up = Upstream::start("a");
    let p = Ports::free();
    let pebble = Pebble::start(p.http, p.tls, None);
    let state = format!(
        "state:\n  store: redis\n  redis:\n    url: \"{}\"\n    key_prefix: \"acme-test:\"\n",
        redis.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(dir.path(), p, true, &pebble, "", &up, &state);
    let t = start(dir, p.http, &yaml);
    let first = wait_for_issued(&t, p.tls, &pebble.root(), Duration::from_secs(60));
    let dir = keep_dir(t);
    // Nothing on disk: what the restarted instance serves can only come from Redis.
    assert!(!dir.path().join("acme").exists());
    let _t = start(dir, p.http, &yaml);
    let served = served_cert(p.tls, NAMES[0]).expect("a certificate at the first handshake");
    assert_eq!(served.to_der().unwrap(), first.to_der().unwrap());
    assert_eq!(pebble.orders(), 1, "{}", pebble.log());
}
