//! SPEC §6 `tether import cloudflare`: the command line, its exit codes, and a round trip from
//! Cloudflare API exports to a running tether that pins a session.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;
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

    let (port, admin) = (free_port(), free_port());
    let imported = text(&out.stdout)
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"));
    let yaml = format!(
        "server:\n  pid_file: {d}/tether.pid\n  upgrade_sock: {d}/upgrade.sock\n  grace_period_seconds: 0\n\n{imported}",
        d = dir.path().display()
    );
    let config = dir.path().join("tether.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let log = dir.path().join("tether.log");
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
    let url = format!("http://127.0.0.1:{port}/cart");
    wait_for("tether to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let c = client();
    let first = get(&c, &url, Some("shop.example.com"), &[]);
    assert_eq!(
        first.status,
        200,
        "{}",
        std::fs::read_to_string(&log).unwrap()
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
