//! SPEC §6 `tether import cloudflare`: the command line, its exit codes, and a round trip from
//! Cloudflare API exports to a running tether that pins a session.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cloudflare")
        .join(name)
}

fn import(args: &[&Path], extra: &[&str]) -> Output {
    Command::new(tether_bin())
        .args(["import", "cloudflare"])
        .args(extra)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn import_prints_yaml_that_tether_test_accepts_and_reports_on_stderr() {
    let files = ["load_balancers.json", "monitors.json", "pools.json"].map(fixture);
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = import(&files, &[]);
    let (yaml, err) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("not imported: load balancer \"api.example.com\""),
        "{err}"
    );
    assert!(err.contains("steering_policy \"geo\""), "{err}");
    assert!(
        yaml.starts_with("# tether configuration imported from Cloudflare"),
        "{yaml}"
    );
    assert!(yaml.contains("# NOT IMPORTED"), "{yaml}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let test = Command::new(tether_bin())
        .env("TETHER_COOKIE_SECRET", SECRET)
        .arg("--config")
        .arg(&path)
        .arg("--test")
        .output()
        .unwrap();
    assert!(test.status.success(), "{}\n{yaml}", text(&test.stderr));
    assert_eq!(text(&test.stdout).trim(), "configuration OK");
}

#[test]
fn origin_tls_flag_gives_port_443_and_pools_origin_tls() {
    let files = ["load_balancers.json", "monitors.json", "pools.json"].map(fixture);
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = import(&files, &["--origin-tls"]);
    let yaml = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(yaml.contains("address: 192.0.2.12:443"), "{yaml}");
    assert_eq!(
        yaml.matches("\n    tls:\n      enabled: true\n").count(),
        4,
        "{yaml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let test = Command::new(tether_bin())
        .env("TETHER_COOKIE_SECRET", SECRET)
        .arg("--config")
        .arg(&path)
        .arg("--test")
        .output()
        .unwrap();
    assert!(test.status.success(), "{}\n{yaml}", text(&test.stderr));
}

#[test]
fn import_of_bad_input_exits_1_naming_file_and_json_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("lbs.json");
    std::fs::write(
        &bad,
        r#"{"result":[{"id":"l","name":"x.example.com","default_pools":["17b5962d775c646f3f9725cbc7a53df4","0000"]}]}"#,
    )
    .unwrap();
    let pools = fixture("pools.json");
    let monitors = fixture("monitors.json");
    let out = import(&[&bad, &pools, &monitors], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "YAML printed despite an error");
    assert!(
        err.contains(
            "lbs.json: result[0].default_pools[1]: pool \"0000\" is defined in no input file"
        ),
        "{err}"
    );

    let not_json = dir.path().join("export.txt");
    std::fs::write(&not_json, "<html>rate limited</html>").unwrap();
    let out = import(&[&not_json], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("export.txt: is not JSON"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn import_without_files_is_a_usage_error_and_config_is_still_required() {
    let out = Command::new(tether_bin())
        .args(["import", "cloudflare"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(tether_bin()).output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--config"),
        "{}",
        text(&out.stderr)
    );
}

/// Rewrites every origin of a pools export to a loopback upstream: `web-1`/`web-2` to the two
/// given, every other origin to `other` (tests reach nothing beyond 127.0.0.0/8).
fn to_loopback(pools: &Path, web1: u16, web2: u16, other: u16) -> String {
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(pools).unwrap()).unwrap();
    for pool in doc["result"].as_array_mut().unwrap() {
        for origin in pool["origins"].as_array_mut().unwrap() {
            let port = match origin["name"].as_str().unwrap() {
                "web-1" => web1,
                "web-2" => web2,
                _ => other,
            };
            origin["address"] = "127.0.0.1".into();
            origin["port"] = port.into();
        }
    }
    doc.to_string()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tether started on an imported config, with its listener, admin port and log.
struct Started {
    _tether: Running,
    port: u16,
    admin: u16,
    log: PathBuf,
}

/// Starts tether on `imported` (import output) in `dir`: loopback listener and admin ports,
/// server files in `dir`, the cookie secret from the environment as the import asks.
fn start_imported(dir: &Path, imported: &str) -> Started {
    let (port, admin) = (free_port(), free_port());
    let imported = imported
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"));
    let yaml = format!(
        "server:\n  pid_file: {d}/tether.pid\n  upgrade_sock: {d}/upgrade.sock\n  grace_period_seconds: 0\n\n{imported}",
        d = dir.display()
    );
    let config = dir.join("tether.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let log = dir.join("tether.log");
    let tether = Running(
        Command::new(tether_bin())
            .env("TETHER_COOKIE_SECRET", SECRET)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("tether to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Started {
        _tether: tether,
        port,
        admin,
        log,
    }
}

#[test]
fn imported_config_starts_and_pins_a_cookie_session() {
    let web1 = Upstream::start("web-1");
    let web2 = Upstream::start("web-2");
    let other = Upstream::start("other");
    let dir = tempfile::tempdir().unwrap();
    let pools = dir.path().join("pools.json");
    std::fs::write(
        &pools,
        to_loopback(
            &fixture("pools.json"),
            web1.addr.port(),
            web2.addr.port(),
            other.addr.port(),
        ),
    )
    .unwrap();
    let out = import(
        &[
            &fixture("monitors.json"),
            &pools,
            &fixture("load_balancers.json"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let tether = start_imported(dir.path(), &text(&out.stdout));
    let (url, log) = (
        format!("http://127.0.0.1:{}/cart", tether.port),
        &tether.log,
    );

    let c = client();
    let first = get(&c, &url, Some("shop.example.com"), &[]);
    assert_eq!(
        first.status,
        200,
        "{}",
        std::fs::read_to_string(log).unwrap()
    );
    let pinned = first.endpoint().to_string();
    assert!(
        pinned == "web-1" || pinned == "web-2",
        "answered by {pinned:?}"
    );
    let cookie = format!("__cflb={}", first.cflb().expect("no __cflb cookie minted"));
    for _ in 0..10 {
        let r = get(&c, &url, Some("shop.example.com"), &[("cookie", &cookie)]);
        assert_eq!((r.status, r.endpoint()), (200, pinned.as_str()));
        assert!(r.cflb().is_none(), "a kept session is not re-minted");
    }
    // The origin's Host override came across.
    let up = if pinned == "web-1" { &web1 } else { &web2 };
    let host = up.requests()[0].headers["host"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(host, "shop.internal");
    drop(tether);
}

/// tether's `--test` on `yaml`, with the cookie secret the import asks for.
fn config_test_imported(yaml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.yaml");
    std::fs::write(&path, yaml).unwrap();
    Command::new(tether_bin())
        .env("TETHER_COOKIE_SECRET", SECRET)
        .arg("--config")
        .arg(&path)
        .arg("--test")
        .output()
        .unwrap()
}

/// The security review's injections (SPEC §6), as export files in `dir`: a pool description
/// whose U+2028 would append `injected-origin` (at `injected`) to the pool before it, a
/// `region_pools` key whose U+0085 would add a top-level `trusted_proxies`, and a file name
/// whose control characters would switch the access log to JSON.
fn injecting_export(dir: &Path, a: u16, b: u16, injected: u16) -> Vec<PathBuf> {
    const LS: &str = "\u{2028}";
    let desc = format!(
        "API{LS}    - name: injected-origin{LS}      address: 127.0.0.1:{injected}{LS}      weight: 1.0{LS}      enabled: true{LS}#"
    );
    let pools = serde_json::json!({"result": [
        {"id": "p1", "name": "web", "origins": [{"name": "a", "address": "127.0.0.1", "port": a}]},
        {"id": "p2", "name": "api", "description": desc,
         "origins": [{"name": "b", "address": "127.0.0.1", "port": b}]},
    ]});
    let key = "WNAM\u{85}trusted_proxies: [127.0.0.1]\u{85}#";
    let lbs = serde_json::json!({"result": [{"id": "l", "name": "shop.example.com",
        "default_pools": ["p1", "p2"], "region_pools": {key: ["p1"]}}]});
    let files = [
        (dir.join("pools.json"), pools),
        (dir.join("lbs\t\naccess_log: {format: json}\n#.json"), lbs),
    ];
    for (path, doc) in &files {
        std::fs::write(path, doc.to_string()).unwrap();
    }
    files.into_iter().map(|(p, _)| p).collect()
}

#[test]
fn text_in_an_export_never_becomes_configuration_of_a_running_tether() {
    let (a, b, injected) = (
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("injected"),
    );
    let dir = tempfile::tempdir().unwrap();
    let files = injecting_export(
        dir.path(),
        a.addr.port(),
        b.addr.port(),
        injected.addr.port(),
    );
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = import(&files, &[]);
    let (yaml, err) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{err}");
    // The text is still shown, escaped: no raw line break but `\n`, no control character.
    let raw = |s: &str| {
        s.chars()
            .any(|c| c != '\n' && (c.is_control() || c == '\u{2028}'))
    };
    assert!(!raw(&yaml), "{yaml:?}");
    assert!(!raw(&err), "{err:?}");
    assert!(yaml.contains("WNAM\\u{0085}trusted_proxies"), "{yaml}");
    let test = config_test_imported(&yaml);
    assert!(test.status.success(), "{}\n{yaml}", text(&test.stderr));

    let tether = start_imported(dir.path(), &yaml);
    let status = crate::common::ops::admin(tether.admin, "GET", "/status", None).json();
    let endpoints: Vec<(String, Vec<String>)> = status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let names = p["endpoints"].as_array().unwrap().iter();
            let names = names.map(|e| e["name"].as_str().unwrap().to_string());
            (p["id"].as_str().unwrap().to_string(), names.collect())
        })
        .collect();
    let want = [("web", vec!["a"]), ("api", vec!["b"])];
    let want: Vec<(String, Vec<String>)> = want
        .iter()
        .map(|(p, e)| (p.to_string(), e.iter().map(|e| e.to_string()).collect()))
        .collect();
    assert_eq!(endpoints, want, "{status}");
    // No trusted_proxies: a forged X-Forwarded-For does not become the client; and the access
    // log is still text.
    let url = format!("http://127.0.0.1:{}/marker-xff", tether.port);
    let c = client();
    let xff = [("x-forwarded-for", "203.0.113.7")];
    let r = get(&c, &url, Some("shop.example.com"), &xff);
    assert_eq!((r.status, r.endpoint()), (200, "a"));
    let mut line = String::new();
    wait_for("the access line", Duration::from_secs(5), || {
        let log = std::fs::read_to_string(&tether.log).unwrap_or_default();
        line = log
            .lines()
            .find(|l| l.contains("/marker-xff"))
            .unwrap_or_default()
            .to_string();
        !line.is_empty()
    });
    let fields = line.split_once("] ").map_or(line.as_str(), |(_, f)| f);
    assert!(fields.starts_with("127.0.0.1 shop.example.com "), "{line}");
    assert!(
        injected.requests().is_empty(),
        "the injected origin was reached"
    );
}

#[test]
fn a_name_that_is_not_printable_is_refused_by_import_and_by_test() {
    let dir = tempfile::tempdir().unwrap();
    let pools = dir.path().join("pools.json");
    let doc = serde_json::json!([{"id": "p1", "name": "we\u{1b}[2Jb",
        "origins": [{"name": "a", "address": "192.0.2.1"}]}]);
    std::fs::write(&pools, doc.to_string()).unwrap();
    let out = import(&[&pools], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains("pools.json: [0].name: \"we\\u{1b}[2Jb\" contains U+001B (a control character): a name must be printable"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");

    let yaml = "listeners:\n  - address: 127.0.0.1:18080\ncookie_secret: ${TETHER_COOKIE_SECRET}\n\
        pools:\n  - id: \"we\\e[2Jb\"\n    endpoints:\n      - { name: a, address: \"192.0.2.1:80\" }\n\
        load_balancers:\n  - name: shop.example.com\n    default_pools: [\"we\\e[2Jb\"]\n";
    let test = config_test_imported(yaml);
    let err = text(&test.stderr);
    assert!(!test.status.success(), "{err}");
    assert!(
        err.contains("pools[0].id: \"we\\u{1b}[2Jb\" contains U+001B (a control character)"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");
}
