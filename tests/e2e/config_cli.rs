//! SPEC §1 `--test` and §2 validation: every kind of invalid config is refused with its YAML path.

#![allow(clippy::unwrap_used)]

use crate::common::*;

const HEAD: &str = "listeners:\n  - address: 127.0.0.1:18080\ncookie_secret: \"a secret that is at least 32 bytes long\"\n";
const POOLS: &str = "pools:\n  - id: web\n    endpoints:\n      - { name: a, address: \"127.0.0.1:9001\" }\n      - { name: b, address: \"127.0.0.1:9002\" }\n";
const LB: &str = "load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n";

fn refused(yaml: &str, expected: &[&str]) {
    let (ok, out) = config_test(yaml);
    assert!(!ok, "accepted:\n{yaml}\n{out}");
    for e in expected {
        assert!(out.contains(e), "expected {e:?} in:\n{out}\nfor:\n{yaml}");
    }
}

#[test]
fn test_flag_accepts_a_valid_config() {
    let (ok, out) = config_test(&format!("{HEAD}{POOLS}{LB}"));
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "configuration OK");
}

#[test]
fn test_flag_accepts_every_shipped_example() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/conf")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let out = std::process::Command::new(tether_bin())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(
                "TETHER_COOKIE_SECRET",
                "example secret for the config test run",
            )
            .env("TETHER_ADMIN_TOKEN", "example-token")
            .arg("--config")
            .arg(&path)
            .arg("--test")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    refused(
        &format!("{HEAD}{POOLS}{LB}colour: blue\n"),
        &["colour: unknown field"],
    );
    let pools = POOLS.replace("name: b,", "name: b, wieght: 1,");
    refused(
        &format!("{HEAD}{pools}{LB}"),
        &["pools[0].endpoints[1]", "unknown field `wieght`"],
    );
    let lb = format!("{LB}    session_affinity_attributes: {{ samesite: Lax, sticky: true }}\n");
    refused(
        &format!("{HEAD}{POOLS}{lb}"),
        &[
            "load_balancers[0].session_affinity_attributes",
            "unknown field `sticky`",
        ],
    );
}

#[test]
fn weight_outside_range_names_the_path() {
    let pools = format!("{POOLS}  - id: two\n    endpoints:\n      - {{ name: c, address: \"127.0.0.1:9003\", weight: 2.0 }}\n");
    refused(
        &format!("{HEAD}{pools}{LB}"),
        &["pools[1].endpoints[0].weight: 2.0 is outside 0..1"],
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let pools = POOLS
        .replace("weight", "")
        .replace("name: a,", "name: a, weight: -1,")
        .replace("127.0.0.1:9002", "nowhere");
    let lb = "load_balancers:\n  - name: \"*\"\n    default_pools: [web, missing]\n    session_affinity_ttl: 5\n    session_affinity: cookie\n";
    refused(
        &format!("{HEAD}{pools}{lb}"),
        &[
            "pools[0].endpoints[0].weight: -1.0 is outside 0..1",
            "pools[0].endpoints[1].address: nowhere is not an address",
            "load_balancers[0].default_pools[1]: no pool with id \"missing\"",
            "load_balancers[0].session_affinity_ttl: 5 is outside 1800..604800",
        ],
    );
    let two_bad_elements = format!(
        "{HEAD}{}{LB}",
        POOLS
            .replace("name: a,", "name: a, x: 1,")
            .replace("name: b,", "name: b, y: 2,")
    );
    refused(
        &two_bad_elements,
        &["pools[0].endpoints[0]", "pools[0].endpoints[1]"],
    );
}

#[test]
fn type_errors_and_missing_required_fields_name_the_path() {
    refused(
        &format!(
            "{HEAD}{}{LB}",
            POOLS.replace("name: b,", "name: b, weight: heavy,")
        ),
        &["pools[0].endpoints[1].weight", "invalid type"],
    );
    refused(
        &format!("{HEAD}{}{LB}", POOLS.replace("name: b, ", "")),
        &["pools[0].endpoints[1]", "missing field `name`"],
    );
    refused(
        &format!("{HEAD}{POOLS}load_balancers:\n  - name: x\n"),
        &["load_balancers[0]", "missing field `default_pools`"],
    );
    refused(
        &format!("cookie_secret: s\n{POOLS}{LB}"),
        &["listeners: at least one listener is required"],
    );
}

#[test]
fn duplicates_are_refused() {
    let pools = format!(
        "{POOLS}  - id: web\n    endpoints:\n      - {{ name: a, address: \"127.0.0.1:9001\" }}\n"
    );
    refused(
        &format!("{HEAD}{pools}{LB}"),
        &["pools[1].id: duplicate pool \"web\" (first at pools[0].id)"],
    );
    refused(
        &format!("{HEAD}{}{LB}", POOLS.replace("name: b", "name: a")),
        &["pools[0].endpoints[1].name: duplicate endpoint \"a\""],
    );
    refused(
        &format!("{HEAD}{POOLS}{LB}{}", LB.replace("load_balancers:\n", "")),
        &["load_balancers[1].name: duplicate load balancer"],
    );
}

#[test]
fn names_must_be_printable_and_may_hold_spaces() {
    // SPEC §3.7: names reach the access log, the status page and errors; YAML's escapes put a
    // control character, a line separator or a bidi override into each kind of name.
    let yaml = format!(
        "{HEAD}monitors:\n  - {{ id: \"m\\x01\", type: tcp }}\n\
         pools:\n  - id: \"web\\L\"\n    monitor: \"m\\x01\"\n    endpoints:\n      - {{ name: \"a\\e[2J\", address: \"127.0.0.1:9001\" }}\n\
         load_balancers:\n  - name: \"shop\\u202E\"\n    default_pools: [\"web\\L\"]\n"
    );
    let (ok, out) = config_test(&yaml);
    assert!(!ok, "accepted:\n{yaml}");
    for e in [
        "monitors[0].id: \"m\\u{1}\" contains U+0001 (a control character): a name must be printable",
        "pools[0].id: \"web\\u{2028}\" contains U+2028 (a line break)",
        "pools[0].endpoints[0].name: \"a\\u{1b}[2J\" contains U+001B",
        "load_balancers[0].name: \"shop\\u{202e}\" contains U+202E (an invisible character)",
    ] {
        assert!(out.contains(e), "expected {e:?} in:\n{out}");
    }
    assert_eq!(
        out.lines().count(),
        4,
        "one error per name, nothing else:\n{out}"
    );
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{2028}'),
        "{out:?}"
    );
    // Spaces and other printable text are names.
    let spaced = POOLS
        .replace("name: b", "name: b c")
        .replace("id: web", "id: web pool");
    let (ok, out) = config_test(&format!(
        "{HEAD}{spaced}{}",
        LB.replace("[web]", "[web pool]")
    ));
    assert!(ok, "{out}");
}

#[test]
fn references_to_missing_pools_and_monitors_are_refused() {
    refused(
        &format!("{HEAD}{POOLS}{LB}    fallback_pool: nope\n"),
        &["load_balancers[0].fallback_pool: no pool with id \"nope\""],
    );
    refused(
        &format!(
            "{HEAD}{}{LB}",
            POOLS.replace("  - id: web\n", "  - id: web\n    monitor: gone\n")
        ),
        &["pools[0].monitor: no monitor with id \"gone\""],
    );
}

#[test]
fn addresses_that_do_not_parse_are_refused() {
    refused(
        &format!(
            "{}{POOLS}{LB}",
            HEAD.replace("127.0.0.1:18080", "localhost")
        ),
        &["listeners[0].address: localhost is not an ip:port address"],
    );
    refused(
        &format!("{HEAD}{}{LB}", POOLS.replace("127.0.0.1:9001", "127.0.0.1")),
        &["pools[0].endpoints[0].address"],
    );
    refused(
        &format!("{HEAD}{POOLS}{LB}admin: {{ address: \"loopback\" }}\n"),
        &["admin.address: loopback"],
    );
    refused(
        &format!("{HEAD}{POOLS}{LB}trusted_proxies: [\"10.0.0.0/33\"]\n"),
        &["trusted_proxies[0]: 10.0.0.0/33"],
    );
}

#[test]
fn admin_off_loopback_without_a_token_is_refused_at_test() {
    let admin = |a: &str| format!("{HEAD}{POOLS}{LB}admin:\n{a}");
    for address in [
        "0.0.0.0:9901",
        "192.0.2.10:9901",
        "[::]:9901",
        "[2001:db8::1]:9901",
    ] {
        refused(
            &admin(&format!("  address: \"{address}\"\n")),
            &["admin.token: is required: admin.address", address],
        );
        let (ok, out) = config_test(&admin(&format!(
            "  address: \"{address}\"\n  token: \"a token for the test\"\n"
        )));
        assert!(ok, "{address} with a token:\n{out}");
    }
    // Loopback needs no token: all of 127.0.0.0/8, ::1, and ::1's IPv4-mapped form of 127.x.
    for address in [
        "127.0.0.1:9901",
        "127.3.4.5:9901",
        "[::1]:9901",
        "[::ffff:127.0.0.1]:9901",
    ] {
        let (ok, out) = config_test(&admin(&format!("  address: \"{address}\"\n")));
        assert!(ok, "{address}:\n{out}");
    }
}

#[test]
fn loop_endpoint_refused_at_test() {
    // An endpoint on the listener itself.
    refused(
        &format!("{HEAD}{}{LB}", POOLS.replace("127.0.0.1:9002", "127.0.0.1:18080")),
        &["pools[0].endpoints[1].address: 127.0.0.1:18080 is tether's own listener 127.0.0.1:18080: tether would send its requests to itself in a loop"],
    );
    // A listener on 0.0.0.0 takes 127.0.0.1 (and every other local address) on its port.
    let any = HEAD.replace("127.0.0.1:18080", "0.0.0.0:18080");
    refused(
        &format!("{any}{}{LB}", POOLS.replace("127.0.0.1:9001", "127.0.0.1:18080")),
        &["pools[0].endpoints[0].address: 127.0.0.1:18080 is tether's own listener 0.0.0.0:18080 (every local address on port 18080)"],
    );
    // The admin listener, reached through the proxy, would take any client's drain or reload.
    refused(
        &format!(
            "{HEAD}{}{LB}admin: {{ address: \"127.0.0.1:9901\" }}\n",
            POOLS.replace("127.0.0.1:9002", "127.0.0.1:9901")
        ),
        &["pools[0].endpoints[1].address: 127.0.0.1:9901 is tether's own admin listener 127.0.0.1:9901"],
    );
    // Another port on the same addresses is someone else: accepted.
    let (ok, out) = config_test(&format!(
        "{any}{LB}admin: {{ address: \"127.0.0.1:9901\" }}\n{}",
        POOLS.replace("127.0.0.1:9002", "127.0.0.1:18081")
    ));
    assert!(ok, "{out}");
}

#[test]
fn affinity_rules_are_enforced() {
    let lb = |extra: &str| format!("{LB}{extra}");
    refused(
        &format!("{HEAD}{POOLS}{}", lb("    session_affinity: header\n")),
        &["session_affinity_attributes.headers: header affinity needs at least one header"],
    );
    refused(
        &format!("{HEAD}{POOLS}{}", lb("    session_affinity: cookie\n    session_affinity_attributes: { samesite: None, secure: Never }\n")),
        &["session_affinity_attributes.samesite: None needs secure Auto or Always"],
    );
    refused(
        &format!(
            "{HEAD}{POOLS}{}",
            lb("    session_affinity: cookie\n    session_affinity_ttl: 700000\n")
        ),
        &["session_affinity_ttl: 700000 is outside 1800..604800"],
    );
    refused(
        &format!("{HEAD}{POOLS}{}", lb("    session_affinity: header\n    session_affinity_ttl: 10\n    session_affinity_attributes: { headers: [x-user] }\n")),
        &["session_affinity_ttl: 10 is outside 30..3600"],
    );
    refused(
        &format!("{HEAD}{POOLS}{}", lb("    session_affinity: header\n    session_affinity_attributes: { headers: [x-user], zero_downtime_failover: sticky }\n")),
        &["zero_downtime_failover: sticky is not supported with header affinity"],
    );
    refused(
        &format!("{HEAD}{POOLS}{}", lb("    session_affinity: header\n    session_affinity_attributes: { headers: [\"bad header\", a, b, c, d, e] }\n")),
        &["headers: 6 entries: at most 5", "headers[0]: \"bad header\""],
    );
    refused(
        &format!("{HEAD}{POOLS}{}", lb("    session_affinity: header\n    session_affinity_attributes: { headers: [X-User, x-user] }\n")),
        &["headers[1]: duplicate header \"x-user\""],
    );
    refused(
        &format!("{HEAD}{POOLS}{}", lb("    session_affinity: sometimes\n")),
        &[
            "load_balancers[0].session_affinity",
            "unknown variant `sometimes`",
        ],
    );
}

#[test]
fn monitor_ranges_are_enforced() {
    let m = |body: &str| format!("{HEAD}monitors:\n  - {{ id: m, {body} }}\n{POOLS}{LB}");
    refused(
        &m("interval: 0"),
        &["monitors[0].interval: 0 is outside 1..3600"],
    );
    refused(
        &m("interval: 10, timeout: 11"),
        &["monitors[0].timeout: 11 is outside 1..10"],
    );
    refused(
        &m("expected_codes: \"2xx,999\""),
        &["monitors[0].expected_codes"],
    );
    refused(
        &m("type: udp"),
        &["monitors[0].type", "unknown variant `udp`"],
    );
    refused(
        &m("consecutive_down: 0"),
        &["monitors[0].consecutive_down: 0 must be at least 1"],
    );
}

#[test]
fn unreadable_tls_files_are_refused() {
    let head = HEAD.replace(
        "  - address: 127.0.0.1:18080\n",
        "  - address: 127.0.0.1:18080\n  - address: 127.0.0.1:18443\n    tls: { cert_path: /nonexistent/cert.pem, key_path: /nonexistent/key.pem }\n",
    );
    refused(
        &format!("{head}{POOLS}{LB}"),
        &[
            "listeners[1].tls.cert_path: /nonexistent/cert.pem cannot be read",
            "listeners[1].tls.key_path",
        ],
    );
}

#[test]
fn cookie_secret_expands_environment_variables() {
    let yaml = format!(
        "{}{POOLS}{LB}",
        HEAD.replace(
            "\"a secret that is at least 32 bytes long\"",
            "${TETHER_TEST_UNSET_VARIABLE}"
        )
    );
    refused(
        &yaml,
        &["cookie_secret: environment variable TETHER_TEST_UNSET_VARIABLE is not set"],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(
        &path,
        yaml.replace("TETHER_TEST_UNSET_VARIABLE", "TETHER_TEST_SECRET"),
    )
    .unwrap();
    let out = std::process::Command::new(tether_bin())
        .env("TETHER_TEST_SECRET", "from the environment, long enough!")
        .args(["--test", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn syntax_errors_and_missing_files_are_reported() {
    refused("listeners: [\n", &["tether.yaml"]);
    let out = std::process::Command::new(tether_bin())
        .args(["--test", "--config", "/nonexistent/tether.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tether.yaml: cannot read"));
}

#[test]
fn test_flag_prints_every_warning() {
    let yaml = "listeners:\n  - address: 127.0.0.1:18080\ncookie_secret: short\n\
                pools:\n  - id: web\n    endpoints:\n      - { name: a, address: \"127.0.0.1:9001\", tls: { enabled: true, verify: false } }\n\
                load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n\
                state:\n  store: embedded\n  redis: { url: \"redis://127.0.0.1:6379\" }\n";
    let (ok, out) = config_test(yaml);
    assert!(ok, "{out}");
    for warning in [
        "warning: cookie_secret is 5 bytes; 32 or more are recommended",
        "warning: pools[0].endpoints[0].tls.verify: web/a: origin TLS with verify: false accepts any certificate",
        "warning: state.redis is ignored with `store: embedded`",
    ] {
        assert!(out.contains(warning), "expected {warning:?} in:\n{out}");
    }
    assert!(out.trim_end().ends_with("configuration OK"), "{out}");
    let (ok, out) = config_test(&format!(
        "listeners:\n  - address: 127.0.0.1:18080\n{POOLS}{LB}"
    ));
    assert!(
        ok && out.contains("warning: cookie_secret is not set"),
        "{out}"
    );
}

#[test]
fn upstream_keepalive_pool_size_range_is_enforced() {
    let s = |v: &str| format!("server:\n  upstream_keepalive_pool_size: {v}\n{HEAD}{POOLS}{LB}");
    refused(
        &s("0"),
        &["server.upstream_keepalive_pool_size: 0 is outside 1..100000"],
    );
    refused(
        &s("100001"),
        &["server.upstream_keepalive_pool_size: 100001 is outside 1..100000"],
    );
    let (ok, out) = config_test(&s("1000"));
    assert!(ok, "{out}");
}
