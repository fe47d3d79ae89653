//! SPEC §4 `GET /`, in a real browser: headless Chromium loads the status page, a mouse click on
//! an endpoint's Drain button drains it, the countdown ticks, and new sessions avoid it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::browser;
use crate::common::ops::admin;
use crate::common::*;
use serde_json::Value;

#[test]
fn clicking_drain_in_the_browser_drains_the_endpoint_and_new_sessions_avoid_it() {
    let Some(bin) = browser::chromium() else {
        eprintln!("SKIPPED: chromium is not installed (`make deps` installs it)");
        return;
    };
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let admin_port = free_port();
    let t = Tether::start(&format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n\
         pools:\n  - id: web\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n\
         \x20   session_affinity_attributes: {{ drain_duration: 60 }}\n",
        endpoints(&[&a, &b])
    ));
    wait_for("the admin listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    // Some traffic, so the sparklines have something to draw.
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, &t.url("/"), None, &[]).status, 200);
    }

    let mut page = browser::Browser::start(bin);
    page.navigate(&format!("http://127.0.0.1:{admin_port}/"));
    let drain_b = r#"button[data-action="drain"][data-name="b"]"#;
    let state_b = r#"document.querySelector('tr[data-endpoint="web/b"] td.state').textContent"#;
    page.wait_until(
        "the Drain button of b",
        Duration::from_secs(20),
        &format!("document.querySelector('{drain_b}') !== null"),
    );
    assert_eq!(page.eval(state_b), "serving");

    page.click(drain_b);

    // The page shows the drain, counting down, without being reloaded by hand.
    page.wait_until(
        "b shown draining",
        Duration::from_secs(10),
        &format!("{state_b}.startsWith('draining, ')"),
    );
    let left = |page: &mut browser::Browser| -> u64 {
        let text = page.eval(state_b);
        let text = text.as_str().unwrap();
        text.trim_start_matches("draining, ")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("no countdown in {text:?}"))
    };
    let first = left(&mut page);
    assert!((55..=60).contains(&first), "{first} s left");
    page.wait_until(
        "the countdown to tick",
        Duration::from_secs(5),
        &format!("parseInt({state_b}.split(' ')[1], 10) < {first}"),
    );
    page.wait_until(
        "an Undrain button for b",
        Duration::from_secs(5),
        r#"document.querySelector('button[data-action="undrain"][data-name="b"]') !== null"#,
    );

    // The drain is real: the API says so and fresh sessions all go to a.
    let status: Value = admin(admin_port, "GET", "/status", None).json();
    let eb = &status["pools"][0]["endpoints"][1];
    assert_eq!(
        (eb["name"].as_str(), eb["state"].as_str()),
        (Some("b"), Some("draining"))
    );
    for _ in 0..20 {
        let r = get(&c, &t.url("/"), None, &[]);
        assert_eq!((r.status, r.endpoint()), (200, "a"));
    }

    // Health reason on hover, and sparklines drawn inline.
    let title = page.eval(
        r#"document.querySelector('tr[data-endpoint="web/a"] td:nth-child(3) span').getAttribute('title')"#,
    );
    assert!(
        title.as_str().is_some_and(|t| !t.is_empty()),
        "no health reason: {title}"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('svg.spark').length"),
        3
    );
    page.wait_until(
        "a requests/s line for a (sampled every 2 s)",
        Duration::from_secs(15),
        r#"document.querySelector('tr[data-endpoint="web/a"] svg.spark polyline') !== null"#,
    );

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status_page.png");
    page.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());

    // Undrain from the page too.
    page.click(r#"button[data-action="undrain"][data-name="b"]"#);
    page.wait_until(
        "b serving again",
        Duration::from_secs(10),
        &format!("{state_b} === 'serving'"),
    );
}

#[test]
fn with_a_token_the_page_asks_once_and_its_buttons_send_it() {
    let Some(bin) = browser::chromium() else {
        eprintln!("SKIPPED: chromium is not installed (`make deps` installs it)");
        return;
    };
    const TOKEN: &str = "page-test-token-0123456789";
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let admin_port = free_port();
    let _t = Tether::start(&format!(
        "admin:\n  address: 127.0.0.1:{admin_port}\n  token: {TOKEN}\n\
         pools:\n  - id: web\n    endpoints:\n{}\
         load_balancers:\n  - name: \"*\"\n    default_pools: [web]\n    session_affinity: cookie\n",
        endpoints(&[&a, &b])
    ));
    wait_for("the admin listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    });
    let mut page = browser::Browser::start(bin);
    page.call("Page.enable", serde_json::json!({}));
    page.navigate(&format!("http://127.0.0.1:{admin_port}/"));
    // The page holds no data until it has the token: it asks for it.
    let dialog = page.wait_event("Page.javascriptDialogOpening");
    assert_eq!(dialog["type"], "prompt", "{dialog}");
    page.call(
        "Page.handleJavaScriptDialog",
        serde_json::json!({ "accept": true, "promptText": TOKEN }),
    );
    let drain_a = r#"button[data-action="drain"][data-name="a"]"#;
    page.wait_until(
        "the page loaded with the token",
        Duration::from_secs(20),
        &format!("document.querySelector('{drain_a}') !== null"),
    );
    assert_eq!(
        page.eval("sessionStorage.getItem('tether-admin-token')"),
        TOKEN
    );

    page.click(drain_a);
    wait_for(
        "a drained through the page",
        Duration::from_secs(10),
        || {
            let status: Value = admin(admin_port, "GET", "/status", Some(TOKEN)).json();
            status["pools"][0]["endpoints"][0]["admin_drained"] == true
        },
    );

    // A reload of the page does not ask again: the token is kept for the tab.
    page.call("Page.reload", serde_json::json!({}));
    page.wait_until(
        "the reloaded page showing a drained",
        Duration::from_secs(20),
        r#"document.querySelector('button[data-action="undrain"][data-name="a"]') !== null"#,
    );
    assert!(
        !page.events_seen("Page.javascriptDialogOpening"),
        "asked for the token again"
    );
}

#[test]
fn the_page_runs_under_its_csp_and_drains_an_endpoint_named_with_a_space() {
    let Some(bin) = browser::chromium() else {
        eprintln!("SKIPPED: chromium is not installed (`make deps` installs it)");
        return;
    };
    let (_t, _ups, admin_port) = start_with_b_c("    session_affinity: cookie\n");
    let mut page = browser::Browser::start(bin);
    page.call("Page.enable", serde_json::json!({}));
    // Installed by DevTools before any of the page's own script, and not subject to its CSP:
    // every violation the browser reports on the page is kept for the test to read.
    page.call(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({ "source": "window.__violations = [];\
            document.addEventListener('securitypolicyviolation', function (e) {\
              window.__violations.push(e.effectiveDirective + ' ' + e.blockedURI);\
            });" }),
    );
    page.navigate(&format!("http://127.0.0.1:{admin_port}/"));
    let drain = r#"button[data-action="drain"][data-name="b c"]"#;
    page.wait_until(
        "the Drain button of \"b c\"",
        Duration::from_secs(20),
        &format!("document.querySelector('{drain}') !== null"),
    );
    // The page was served with its policy, and a script injected into it does not run: the
    // policy is enforced, and a violation is seen by the listener above.
    let csp = page.eval(
        "fetch('/', { headers: { 'X-Tether-Page': '1' } })\
         .then(function (r) { return r.headers.get('content-security-policy'); })",
    );
    assert!(
        csp.as_str().is_some_and(
            |p| p.contains("script-src 'sha256-") && p.contains("frame-ancestors 'none'")
        ),
        "{csp}"
    );

    page.click(drain);
    wait_for(
        "\"b c\" drained through the page",
        Duration::from_secs(10),
        || {
            let status: Value = admin(admin_port, "GET", "/status", None).json();
            status["pools"][0]["endpoints"][1]["admin_drained"] == true
        },
    );
    // The page's own refresh shows it (its script ran, under the policy).
    page.wait_until(
        "an Undrain button for \"b c\"",
        Duration::from_secs(10),
        r#"document.querySelector('button[data-action="undrain"][data-name="b c"]') !== null"#,
    );
    assert_eq!(page.eval("document.getElementById('msg').textContent"), "");
    assert_eq!(
        page.eval("JSON.stringify(window.__violations)"),
        "[]",
        "the page's own script and style break nothing of its policy"
    );

    // A control: an injected inline script is blocked and reported.
    page.eval(
        "var s = document.createElement('script'); s.textContent = 'window.__ran = 1';\
         document.body.appendChild(s); 0",
    );
    page.wait_until(
        "the injected script's violation",
        Duration::from_secs(5),
        "window.__violations.length > 0",
    );
    assert_eq!(page.eval("typeof window.__ran"), "undefined");
}
