//! SPEC §6: text from an export is never configuration. The cases the security review found,
//! each through the importer and tether's own loader.

use super::*;
use crate::config::printable::is_unprintable;

const LS: char = '\u{2028}';
const NEL: char = '\u{85}';

/// Two pools; the second one's description tries to append an origin to the first.
fn injecting_pools() -> String {
    let desc = format!(
        "api{LS}    - name: injected-origin{LS}      address: 127.0.0.1:9{LS}      weight: 1.0{LS}      enabled: true{LS}#"
    );
    serde_json::json!({"result": [
        {"id": "p1", "name": "web", "origins": [{"name": "a", "address": "192.0.2.1"}]},
        {"id": "p2", "name": "api", "description": desc, "origins": [{"name": "b", "address": "192.0.2.2"}]},
    ]})
    .to_string()
}

/// A balancer whose `region_pools` key tries to add `trusted_proxies`.
fn injecting_balancer() -> String {
    let key = format!("WNAM{NEL}trusted_proxies: [0.0.0.0/0]{NEL}#");
    serde_json::json!({"result": [{"id": "l", "name": "x.example.com", "default_pools": ["p1", "p2"],
        "region_pools": {key: ["p1"]}}]})
    .to_string()
}

#[test]
fn descriptions_and_keys_with_yaml_line_breaks_stay_in_their_comments() {
    let out = import_text(&[&injecting_pools(), &injecting_balancer()]).unwrap();
    let config = load(&out.yaml);
    let endpoints: Vec<Vec<&str>> = config
        .pools
        .iter()
        .map(|p| p.endpoints.iter().map(|e| e.name.as_str()).collect())
        .collect();
    assert_eq!(endpoints, [["a"], ["b"]], "{}", out.yaml);
    assert!(config.trusted_proxies.is_empty(), "{}", out.yaml);
    // The text is still there to read, escaped, on one line each.
    assert!(
        out.yaml
            .contains("# api\\u{2028}    - name: injected-origin"),
        "{}",
        out.yaml
    );
    assert!(
        out.yaml
            .contains("region_pools (WNAM\\u{0085}trusted_proxies"),
        "{}",
        out.yaml
    );
    assert!(!out.yaml.chars().any(|c| c != '\n' && is_unprintable(c)));
}

#[test]
fn file_names_and_notes_with_control_characters_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let name = "pools\n- id: injected\u{2029}\u{1b}[2J.json";
    let path = dir.path().join(name);
    std::fs::write(
        &path,
        injecting_pools().replace("192.0.2.1\"", "192.0.2.1\",\"virtual_network_id\":\"v\""),
    )
    .unwrap();
    let monitor = dir.path().join("m.json");
    let zone = format!("z{NEL}trusted_proxies: [0.0.0.0/0]");
    let m = serde_json::json!({"id": "m", "type": "http", "probe_zone": zone});
    std::fs::write(&monitor, m.to_string()).unwrap();
    let out = cloudflare(&[&path, &monitor], Options::default()).unwrap();
    let config = load(&out.yaml);
    assert_eq!(config.pools.len(), 2, "{}", out.yaml);
    assert!(config.trusted_proxies.is_empty(), "{}", out.yaml);
    assert!(
        out.yaml
            .contains("cloudflare` pools\\n- id: injected\\u{2029}\\u{001B}[2J.json m.json\n"),
        "{}",
        out.yaml
    );
    assert!(!out.yaml.chars().any(|c| c != '\n' && is_unprintable(c)));
}

#[test]
fn values_with_yaml_line_breaks_read_back_exactly() {
    // serde_yaml writes U+2028 raw inside a literal scalar; indenting only at `\n` let the rest
    // of the scalar become keys of the item holding it.
    let host = format!("shop.internal\n{LS}tls: {{enabled: true, verify: false}}");
    let body = format!("ok\n{LS}path: /injected");
    let pools = serde_json::json!([{"id": "p", "name": "web", "monitor": "m",
        "origins": [{"name": "a", "address": "192.0.2.1", "header": {"Host": [host]}}]}]);
    let monitor = serde_json::json!({"id": "m", "type": "http", "expected_body": body});
    let out = import_text(&[&pools.to_string(), &monitor.to_string()]).unwrap();
    let read: serde_yaml::Value = serde_yaml::from_str(&out.yaml).unwrap();
    let endpoint = &read["pools"][0]["endpoints"][0];
    assert_eq!(endpoint["header"]["Host"][0].as_str(), Some(host.as_str()));
    assert_eq!(endpoint.as_mapping().unwrap().len(), 5, "{}", out.yaml);
    let monitor = &read["monitors"][0];
    assert_eq!(monitor["expected_body"].as_str(), Some(body.as_str()));
    assert!(monitor.get("path").is_none(), "{}", out.yaml);
}

#[test]
fn names_that_are_not_printable_are_refused_with_their_json_path() {
    let pools = serde_json::json!({"result": [
        {"id": "p1", "name": "we\u{1b}b", "origins": [{"name": "a", "address": "192.0.2.1"}]},
        {"id": "p2", "name": "api", "origins": [
            {"name": "b c", "address": "192.0.2.2"},
            {"name": "d\u{2028}e", "address": "192.0.2.3"},
            {"address": "192.0.2.4\u{7f}"},
        ]},
    ]});
    let lb = serde_json::json!([{"id": "l", "name": "x\u{0}.example.com", "default_pools": ["p1", "p2"]}]);
    let errs = import_text(&[&pools.to_string(), &lb.to_string()]).unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let want = [
        "f0.json: result[0].name: \"we\\u{1b}b\" contains U+001B (a control character): a name must be printable",
        "f0.json: result[1].origins[1].name: \"d\\u{2028}e\" contains U+2028 (a line break)",
        "f0.json: result[1].origins[2].address: \"192.0.2.4\\u{7f}\" contains U+007F",
        "f1.json: [0].name: \"x\\0.example.com\" contains U+0000",
    ];
    assert_eq!(errs.len(), want.len(), "{text:#?}");
    for (t, w) in text.iter().zip(want) {
        assert!(t.contains(w), "{w:?} not in {t:?}");
    }
}

#[test]
fn names_with_spaces_import_and_generated_monitor_ids_are_names() {
    let pools = serde_json::json!([{"id": "p", "name": "web pool", "monitor": "\u{1b}[31m\n",
        "origins": [{"name": "b c", "address": "192.0.2.1"}]}]);
    let monitor = serde_json::json!({"id": "\u{1b}[31m\n", "type": "http"});
    let out = import_text(&[&pools.to_string(), &monitor.to_string()]).unwrap();
    let config = load(&out.yaml);
    assert_eq!(config.pools[0].pool.id, "web pool");
    assert_eq!(config.pools[0].endpoints[0].name, "b c");
    assert_eq!(config.monitors[0].id, "monitor-31m");
}

#[test]
fn values_that_are_only_line_breaks_read_back_exactly() {
    // Found by the property test: a monitor Host of "\n" failed the importer's own read-back,
    // and so did an endpoint's as the last value before the next section (serde_yaml writes
    // it as a block scalar that keeps its trailing blank lines: a blank line between sections
    // became part of the value).
    for value in ["\n", "\n\n", " \n", "\n ", "a\n\n"] {
        let monitor = serde_json::json!({"id": "m", "type": "http", "header": {"Host": [value]}});
        let pools = serde_json::json!([{"id": "p", "name": "web", "monitor": "m",
            "origins": [{"name": "a", "address": "192.0.2.1", "header": {"Host": [value]}}]}]);
        let lb = serde_json::json!([{"id": "lb", "name": "shop.example", "default_pools": ["p"]}]);
        let out = import_text(&[&pools.to_string(), &monitor.to_string(), &lb.to_string()])
            .unwrap_or_else(|e| panic!("{value:?}: {e:?}"));
        let read: serde_yaml::Value = serde_yaml::from_str(&out.yaml).unwrap();
        let host = &read["monitors"][0]["header"]["Host"][0];
        assert_eq!(host.as_str(), Some(value), "{value:?}:\n{}", out.yaml);
        let host = &read["pools"][0]["endpoints"][0]["header"]["Host"][0];
        assert_eq!(host.as_str(), Some(value), "{value:?}:\n{}", out.yaml);
    }
}
