#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use super::*;
use crate::config::Config;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cloudflare"
    ))
    .join(name)
}

fn all_fixtures() -> Vec<PathBuf> {
    [
        "load_balancers.json",
        "pools.json",
        "monitors.json",
        "bare_monitor.json",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect()
}

/// The YAML parsed by tether's own loader, with the secret variable set.
fn load(yaml: &str) -> Config {
    Config::from_yaml_with_env(yaml, "imported", &|_| Some("s".repeat(32)))
        .unwrap_or_else(|e| panic!("tether refuses the import:\n{e}\n---\n{yaml}"))
        .file
}

fn import_text(docs: &[&str]) -> Result<Output, Vec<ImportError>> {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let p = dir.path().join(format!("f{i}.json"));
            std::fs::write(&p, d).unwrap();
            p
        })
        .collect();
    cloudflare(&files, Options::default())
}

#[test]
fn fixtures_import_to_a_config_tether_accepts() {
    let out = cloudflare(&all_fixtures(), Options::default()).unwrap();
    let config = load(&out.yaml);
    let ids: Vec<&str> = config.pools.iter().map(|p| p.pool.id.as_str()).collect();
    assert_eq!(ids, ["web-primary", "web-secondary", "api", "legacy"]);
    let lb = &config.load_balancers[0];
    assert_eq!(lb.name, "shop.example.com");
    assert_eq!(lb.default_pools, ["web-primary", "web-secondary"]);
    assert_eq!(lb.fallback_pool.as_deref(), Some("web-secondary"));
    assert_eq!(lb.session_affinity, crate::config::Affinity::Cookie);
    assert_eq!(lb.session_affinity_ttl, Some(82800));
    let a = &lb.session_affinity_attributes;
    assert_eq!(a.drain_duration, 120);
    assert_eq!(a.zero_downtime_failover, crate::config::Failover::Sticky);
    assert_eq!(a.secure, crate::config::Secure::Always);
    assert!(lb.adaptive_routing.failover_across_pools);
    // Cloudflare never retries an origin that answered: the import keeps that (SPEC §3.9).
    assert!(lb.retry_on_status.is_empty());
    assert!(!out.yaml.contains("retry_on_status"));
    assert!(out.yaml.contains("cookie_secret: ${TETHER_COOKIE_SECRET}"));
}

#[test]
fn the_same_files_in_another_order_give_the_same_config() {
    let mut files = all_fixtures();
    let a = cloudflare(&files, Options::default()).unwrap();
    files.reverse();
    let b = cloudflare(&files, Options::default()).unwrap();
    let (ca, cb) = (load(&a.yaml), load(&b.yaml));
    let names = |c: &Config| {
        format!(
            "{:?}",
            c.load_balancers
                .iter()
                .map(|l| (&l.name, &l.default_pools))
                .collect::<Vec<_>>()
        )
    };
    assert_eq!(names(&ca), names(&cb));
    assert_eq!(ca.monitors.len(), cb.monitors.len());
}

#[test]
fn origins_get_address_port_weight_enabled_and_host() {
    let out = cloudflare(&all_fixtures(), Options::default()).unwrap();
    let config = load(&out.yaml);
    let web = &config.pools[0];
    assert_eq!(web.pool.monitor.as_deref(), Some("shop-health-check"));
    let e: Vec<(&str, &str, f64, bool)> = web
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.address.as_str(), e.weight, e.enabled))
        .collect();
    assert_eq!(
        e,
        [
            ("web-1", "192.0.2.10:8080", 1.0, true),
            ("web-2", "192.0.2.11:8080", 0.5, true),
            ("web-3", "192.0.2.12:80", 1.0, false),
        ]
    );
    assert_eq!(web.endpoints[0].header["Host"], ["shop.internal"]);
    assert_eq!(config.pools[1].endpoints[0].address, "[2001:db8::10]:80");
    // A disabled pool's endpoints take no new sessions.
    assert!(config.pools[3].endpoints.iter().all(|e| !e.enabled));

    let tls = cloudflare(&all_fixtures(), Options { origin_tls: true }).unwrap();
    let config = load(&tls.yaml);
    assert_eq!(config.pools[0].endpoints[2].address, "192.0.2.12:443");
    assert_eq!(config.pools[0].endpoints[0].address, "192.0.2.10:8080");
    for p in &config.pools {
        let t = p
            .pool
            .tls
            .as_ref()
            .expect("--origin-tls sets the pool's tls");
        assert_eq!((t.enabled, t.verify), (Some(true), None), "{}", p.pool.id);
    }
}

#[test]
fn allow_insecure_turns_off_certificate_checks_only_where_just_the_monitor_uses_them() {
    // The "api" pool's https monitor has allow_insecure.
    let plain = cloudflare(&all_fixtures(), Options::default()).unwrap();
    let config = load(&plain.yaml);
    let tls = |c: &Config, pool: &str| {
        let p = c.pools.iter().find(|p| p.pool.id == pool).unwrap();
        p.pool.tls.as_ref().map(|t| (t.enabled, t.verify))
    };
    assert_eq!(tls(&config, "api"), Some((None, Some(false))));
    assert_eq!(tls(&config, "web-primary"), None);
    assert!(plain
        .not_imported
        .iter()
        .any(|n| n.contains("only the monitor is affected")));

    let with_tls = cloudflare(&all_fixtures(), Options { origin_tls: true }).unwrap();
    let config = load(&with_tls.yaml);
    assert_eq!(tls(&config, "api"), Some((Some(true), None)));
    assert!(with_tls
        .not_imported
        .iter()
        .any(|n| n.contains("left verifying")));
}

#[test]
fn monitors_are_mapped_field_by_field() {
    let out = cloudflare(&all_fixtures(), Options::default()).unwrap();
    let config = load(&out.yaml);
    let m = &config.monitors[0];
    assert_eq!(m.id, "shop-health-check");
    assert_eq!((m.path.as_str(), m.method.as_str()), ("/health", "GET"));
    assert_eq!(m.header["Host"], ["shop.internal"]);
    assert_eq!(
        (m.expected_codes.as_str(), m.expected_body.as_str()),
        ("200", "health")
    );
    assert_eq!(
        (m.interval, m.timeout, m.consecutive_up, m.consecutive_down),
        (15, 3, 2, 3)
    );
    let https = &config.monitors[1];
    assert_eq!(https.kind, crate::config::MonitorKind::Https);
    assert_eq!((https.port, https.method.as_str()), (8443, "HEAD"));
    assert_eq!((https.consecutive_up, https.consecutive_down), (1, 1));
    let tcp = &config.monitors[2];
    assert_eq!(
        (tcp.kind, tcp.port),
        (crate::config::MonitorKind::Tcp, 5432)
    );
}

#[test]
fn what_tether_does_not_do_is_listed_at_the_top() {
    let out = cloudflare(&all_fixtures(), Options::default()).unwrap();
    let expected = [
        "steering_policy \"geo\" (geo steering)",
        "region_pools (EEU, WNAM)",
        "country_pools (US)",
        "rules[0] \"route /admin to primary\"",
        "pool \"legacy\"",
        "is disabled",
        "notification_email",
        "check_regions",
        "latitude / longitude",
        "retries 2",
        "follow_redirects",
        "allow_insecure",
        "probe_zone \"example.com\"",
    ];
    let top: String = out
        .yaml
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for e in expected {
        assert!(
            out.not_imported.iter().any(|n| n.contains(e)),
            "{e:?} not reported: {:#?}",
            out.not_imported
        );
        assert!(top.contains(e), "{e:?} not in the YAML's head:\n{top}");
    }
    // Nothing reported that Cloudflare left at its default.
    for quiet in [
        "load_shedding",
        "location_strategy",
        "random_steering",
        "networks",
        "result_info",
        "zone_name",
    ] {
        assert!(
            !out.not_imported.iter().any(|n| n.contains(quiet)),
            "{quiet} reported: {:#?}",
            out.not_imported
        );
    }
}

#[test]
fn header_affinity_keeps_cookie_entries() {
    let out = cloudflare(&all_fixtures(), Options::default()).unwrap();
    let config = load(&out.yaml);
    let api = &config.load_balancers[1];
    assert_eq!(api.session_affinity, crate::config::Affinity::Header);
    let a = &api.session_affinity_attributes;
    assert_eq!(a.headers, ["x-tenant-id", "cookie:cart,session_id"]);
    assert!(a.require_all_headers);
    assert_eq!(a.zero_downtime_failover, crate::config::Failover::Temporary);
    assert_eq!(api.default_pools, ["api", "web-primary", "legacy"]);
}

#[test]
fn envelope_bare_list_and_bare_object_are_all_read() {
    let pool = r#"{"id":"p1","name":"only","origins":[{"name":"a","address":"192.0.2.1"}]}"#;
    let lb = r#"{"id":"l1","name":"x.example.com","default_pools":["p1"],"fallback_pool":"p1"}"#;
    for docs in [
        vec![
            format!("{{\"success\":true,\"result\":[{pool}]}}"),
            format!("[{lb}]"),
        ],
        vec![format!("{{\"result\":{pool}}}"), lb.to_string()],
        vec![format!("[{lb},{pool}]")],
    ] {
        let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let out = import_text(&docs).unwrap();
        let config = load(&out.yaml);
        assert_eq!(config.load_balancers[0].default_pools, ["only"]);
        assert_eq!(config.pools[0].endpoints[0].address, "192.0.2.1:80");
    }
}

#[test]
fn a_pool_id_no_file_defines_names_file_and_path() {
    let lb = r#"{"result":[{"id":"l1","name":"x.example.com","default_pools":["p1","nope"],"fallback_pool":"p1"}]}"#;
    let pool = r#"[{"id":"p1","name":"only","origins":[{"name":"a","address":"192.0.2.1"}]}]"#;
    let errs = import_text(&[pool, lb]).unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 1, "{text:?}");
    assert!(text[0].ends_with("f1.json: result[0].default_pools[1]: pool \"nope\" is defined in no input file (export GET /accounts/{account}/load_balancers/pools too)"), "{text:?}");
}

#[test]
fn bad_input_is_refused_with_every_problem_named() {
    let errs = import_text(&[
        "{ not json",
        r#"{"id":"l1","name":"x","default_pools":["p"],"session_affinity":"sticky_ip"}"#,
        r#"[{"id":"p","name":"p","origins":[{"address":"192.0.2.1","port":"eighty"}]}]"#,
        r#"[{"hello":1}]"#,
    ])
    .unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let want = [
        "f0.json: is not JSON",
        "f2.json: [0].origins[0].port: invalid type: string \"eighty\"",
        "f3.json: [0]: is not a Cloudflare load balancer",
    ];
    for w in want {
        assert!(text.iter().any(|t| t.contains(w)), "{w:?} not in {text:#?}");
    }
    // The session_affinity error is found once the other files read cleanly.
    let pool = r#"[{"id":"p","name":"p","origins":[{"address":"192.0.2.1"}]}]"#;
    let lb = r#"{"id":"l1","name":"x","default_pools":["p"],"session_affinity":"sticky_ip"}"#;
    let errs = import_text(&[pool, lb]).unwrap_err();
    assert!(errs[0].to_string().ends_with("f1.json: session_affinity: \"sticky_ip\" is not a session affinity (none, cookie, ip_cookie, header)"), "{errs:?}");
}

#[test]
fn an_api_error_answer_is_refused() {
    let doc = r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"result":null}"#;
    let errs = import_text(&[doc]).unwrap_err();
    assert!(
        errs[0].to_string().contains("success: is false"),
        "{errs:?}"
    );
    assert!(
        errs[0].to_string().contains("Authentication error"),
        "{errs:?}"
    );
}

#[test]
fn values_tether_refuses_are_adjusted_and_reported() {
    let pool = r#"[{"id":"p","name":"p","minimum_origins":3,"origins":[{"name":"a","address":"192.0.2.1","header":{"X-Foo":["1"]}}]}]"#;
    let lb = r#"[{"id":"l","name":"x","default_pools":["p"],"session_affinity":"header","session_affinity_ttl":90000,
        "session_affinity_attributes":{"headers":["x-user"],"zero_downtime_failover":"sticky","samesite":"None","secure":"Never"}}]"#;
    let out = import_text(&[pool, lb]).unwrap();
    let config = load(&out.yaml);
    assert_eq!(config.pools[0].pool.minimum_origins, 1);
    assert_eq!(config.load_balancers[0].session_affinity_ttl, Some(3600));
    for e in [
        "minimum_origins 3",
        "header \"X-Foo\"",
        "session_affinity_ttl 90000",
        "sticky is not supported with header",
        "samesite None with secure Never",
    ] {
        assert!(
            out.not_imported.iter().any(|n| n.contains(e)),
            "{e:?} not in {:#?}",
            out.not_imported
        );
    }
}

#[test]
fn unknown_fields_are_reported_not_dropped() {
    let pool = r#"[{"id":"p","name":"p","brand_new_knob":{"on":true},"origins":[{"name":"a","address":"192.0.2.1"}]}]"#;
    let out = import_text(&[pool]).unwrap();
    assert!(
        out.not_imported
            .iter()
            .any(|n| n.contains("\"brand_new_knob\"")),
        "{:#?}",
        out.not_imported
    );
}

#[test]
fn a_monitor_no_file_defines_is_reported_and_the_pool_kept() {
    let pool = r#"[{"id":"p","name":"web","monitor":"m404","origins":[{"name":"a","address":"192.0.2.1"}]}]"#;
    let lb = r#"[{"id":"l","name":"x.example.com","default_pools":["p"],"fallback_pool":"p"}]"#;
    let out = import_text(&[pool, lb]).unwrap();
    let config = load(&out.yaml);
    assert_eq!(config.pools[0].pool.monitor, None);
    assert!(
        out.not_imported
            .iter()
            .any(|n| n.contains("monitor \"m404\" is in no input file")),
        "{:#?}",
        out.not_imported
    );
}

#[test]
fn two_balancers_for_one_hostname_keep_the_first_and_report_the_second() {
    let pool = r#"[{"id":"p","name":"web","origins":[{"name":"a","address":"192.0.2.1"}]}]"#;
    let lbs = r#"[{"id":"l1","name":"x.example.com","default_pools":["p"]},{"id":"l2","name":"X.example.com","default_pools":["p"]}]"#;
    let out = import_text(
        &["\u{feff}".to_string() + pool, lbs.to_string()]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let config = load(&out.yaml);
    assert_eq!(config.load_balancers.len(), 1);
    assert!(
        out.not_imported.iter().any(|n| n.contains("same hostname")),
        "{:#?}",
        out.not_imported
    );
}

mod untrusted;
