//! `GET /` on the admin listener: the status page a person runs tether from (SPEC §4).
//!
//! It is rendered on the server, so it shows everything without a script; a small inline script
//! (`status_page.js`) then refreshes it in place, ticks drain countdowns each second, and sends
//! the drain / undrain buttons' POSTs with the admin token, asked once and kept in
//! `sessionStorage`. Sparklines are inline SVG. No external asset: it works offline and behind
//! an SSH tunnel. With a token set, a browser (which cannot send a bearer header on navigation)
//! first gets [`locked`], a page without any data that asks for the token and loads the rest.

use std::fmt::Write;
use std::sync::LazyLock;

use base64::Engine as _;
use http::HeaderValue;
use sha2::{Digest, Sha256};

use crate::balancer::Snapshot;

use super::history::{self, OUTCOME_GROUPS};
use super::html::esc;
use super::sparkline;
use super::status::{pools, EndpointView};
use crate::affinity::EndpointId;

/// Seconds between the page's refreshes; a drain countdown ticks every second in between.
const REFRESH_SECONDS: u32 = 2;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;background:#fff;min-width:40em}\
th,td{border:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:middle}th{background:#f0f0f0}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#176f2c;font-weight:600}.bad{color:#b3261e;font-weight:600}.warn{color:#8a5a00;font-weight:600}\
.muted{color:#777}[title]{cursor:help}svg.spark{vertical-align:middle;margin-right:.4em}\
button{font:inherit;padding:.15em .8em;border-radius:4px;border:1px solid #888;background:#fff;cursor:pointer}\
button.drain{border-color:#b3261e;color:#b3261e}button.undrain{border-color:#176f2c;color:#176f2c}\
button:disabled{opacity:.5}.key{display:inline-block;width:.8em;height:.25em;margin:0 .2em .15em .6em}\
#msg{color:#b3261e}";

const SCRIPT: &str = include_str!("status_page.js");

/// The page's whole style sheet: [`STYLE`] and a class per outcome colour (`.k0`…), so that no
/// element needs a `style` attribute, which a CSP could allow only for every inline style.
static STYLE_TEXT: LazyLock<String> = LazyLock::new(|| {
    let mut css = STYLE.to_string();
    for (i, colour) in OUTCOME_COLOURS.iter().enumerate() {
        let _ = write!(css, ".k{i}{{background:{colour}}}");
    }
    css
});

/// The page's script with its refresh period filled in: the exact text its CSP hash covers.
static SCRIPT_TEXT: LazyLock<String> =
    LazyLock::new(|| SCRIPT.replace("REFRESH_MS", &(REFRESH_SECONDS * 1000).to_string()));

/// The `Content-Security-Policy` of both pages ([`render`] and [`locked`]): nothing loads or
/// runs but the page's own script and style sheet, named by their SHA-256 (so an injected
/// `<script>` or `style` attribute would not apply), fetches go only to the admin listener
/// itself, and no other site may frame the page (clickjacking of the drain buttons).
static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sha256_source(&SCRIPT_TEXT),
        sha256_source(&STYLE_TEXT),
    );
    // Base64 and ASCII only, so this cannot fail; the strict policy would still be safe.
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
});

/// The CSP hash source (`sha256-<base64>`) of an inline element's exact text.
fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The `Content-Security-Policy` value for the status page and the locked page.
pub fn content_security_policy() -> HeaderValue {
    POLICY.clone()
}

/// The header the page's script sends on its own requests (so that, with a token set, its
/// `GET /` gets a 401 rather than [`locked`] again). Lower case, as `HeaderName` wants it.
pub const SCRIPT_HEADER: &str = "x-tether-page";

/// Colours of [`OUTCOME_GROUPS`], in order.
const OUTCOME_COLOURS: [&str; 4] = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"];
/// Colour of the requests/s line.
const RATE_COLOUR: &str = "#1f77b4";

/// The page around `main`: head, style, and the script.
fn page(main: &str) -> String {
    let (style, script) = (STYLE_TEXT.as_str(), SCRIPT_TEXT.as_str());
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <noscript><meta http-equiv=refresh content={REFRESH_SECONDS}></noscript>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>tether status</title><style>{style}</style></head><body>\
         <h1>tether</h1><p class=muted>Refreshes every {REFRESH_SECONDS} s. \
         Machine-readable: <a href=/status>/status</a>, <a href=/metrics>/metrics</a>. \
         <span id=msg></span></p>{main}<script>{script}</script></body></html>\n"
    )
}

/// The page for a browser that has not given the admin token yet: no data, only the script
/// that asks for the token and loads the page with it.
pub fn locked() -> String {
    page(
        "<main data-locked=1><p>This admin listener needs its token. \
         The page asks for it once and keeps it for this tab only.</p></main>",
    )
}

fn endpoint_row(out: &mut String, e: &EndpointView) {
    let reason = e
        .health_reason
        .as_deref()
        .unwrap_or("not checked yet: healthy until the first check");
    let health = if e.healthy {
        format!("<span class=ok title=\"{}\">healthy</span>", esc(reason))
    } else {
        format!("<span class=bad title=\"{}\">unhealthy</span>", esc(reason))
    };
    let state = match (e.state, e.drain_remaining) {
        ("serving", _) => "<span class=ok>serving</span>".to_string(),
        ("draining", Some(s)) => {
            format!("<span class=warn data-remaining={s}>draining, {s} s left</span>")
        }
        (other, _) => format!("<span class=muted>{other}</span>"),
    };
    let how = if e.admin_drained {
        " <span class=muted>(admin API)</span>"
    } else {
        ""
    };
    let label = format!("{}/{}", e.pool, e.name);
    let rates = history::endpoint_rates(EndpointId::of(&e.pool, &e.name));
    let now = rates.last().copied().unwrap_or(0.0);
    let chart = sparkline::svg(
        &[(&rates, RATE_COLOUR)],
        history::KEEP,
        &format!("{label}: requests/s over the last 5 minutes"),
    );
    let (pool, name) = (esc(&e.pool), esc(&e.name));
    let tls = tls_marker(e);
    let action = if e.admin_drained {
        format!("<button class=undrain data-action=undrain data-pool=\"{pool}\" data-name=\"{name}\">Undrain</button>")
    } else if e.enabled {
        format!("<button class=drain data-action=drain data-pool=\"{pool}\" data-name=\"{name}\">Drain</button>")
    } else {
        "<span class=muted title=\"enabled: false in the config file\">disabled in file</span>"
            .to_string()
    };
    let _ = write!(
        out,
        "<tr data-endpoint=\"{pool}/{name}\"><td>{name}</td><td>{}{tls}</td><td>{health}</td>\
         <td class=state>{state}{how}</td><td class=num>{}</td><td class=num>{}</td>\
         <td class=num>{}</td><td>{chart}<span class=num>{now:.1}</span></td><td>{action}</td></tr>",
        addresses_cell(e),
        e.weight,
        e.inflight,
        e.requests,
    );
}

/// The address as written and, for a name, where it points now and since when (SPEC §3.10).
fn addresses_cell(e: &EndpointView) -> String {
    let written = esc(&e.address);
    let Some(at) = e.resolved_at else {
        if e.addresses.is_empty() {
            return format!("{written} <span class=bad>(unresolved)</span>");
        }
        return written;
    };
    let now: Vec<String> = e.addresses.iter().map(ToString::to_string).collect();
    let when = jiff::Timestamp::from_second(i64::try_from(at).unwrap_or(i64::MAX))
        .map(|t| t.to_string())
        .unwrap_or_default();
    format!(
        "{written} → {} <span class=muted>(resolved {})</span>",
        esc(&now.join(", ")),
        esc(&when)
    )
}

/// What the address cell says about origin TLS: nothing for plain HTTP, a quiet `TLS` when the
/// certificate is checked, a warning when it is not (`verify: false` accepts any certificate).
fn tls_marker(e: &EndpointView) -> String {
    match (e.tls, e.verify) {
        (false, _) => String::new(),
        (true, true) => format!(
            " <span class=muted title=\"TLS, certificate checked for {}\">TLS</span>",
            esc(&e.sni)
        ),
        (true, false) => " <span class=bad data-tls-unverified \
             title=\"verify: false: any certificate is accepted\">TLS not verified</span>"
            .to_string(),
    }
}

/// The retries cell of a balancer: its count, or a muted "off" when it lists no status.
fn retries_cell(listed: &[u16], count: u64) -> String {
    if listed.is_empty() {
        return "<span class=muted>off</span>".to_string();
    }
    let codes: Vec<String> = listed.iter().map(u16::to_string).collect();
    format!("{count} <span class=muted>on {}</span>", codes.join(", "))
}

/// The listeners' certificates: names, issuer, where from, expiry.
fn certificates(out: &mut String, certs: &[super::certs::CertView], now: u64) {
    if certs.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Certificates</h2><table><tr><th>Listener</th><th>Names</th><th>Issuer</th>\
         <th>From</th><th>Expires in</th></tr>",
    );
    for c in certs {
        let days = c.info.not_after.saturating_sub(now) / 86_400;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{days} d</td></tr>",
            esc(&c.listener),
            esc(&c.info.names.join(", ")),
            esc(&c.info.issuer),
            c.source,
        );
    }
    out.push_str("</table>");
}

/// The whole page for `snap` at unix time `now`, with its data and the listeners' `certs`.
pub fn render(snap: &Snapshot, now: u64, certs: &[super::certs::CertView]) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str(
        "<main data-full=1><h2>Load balancers</h2><table><tr><th>Host</th><th>Pools</th>\
         <th>Fallback</th><th>Affinity</th><th>Drain duration</th><th>Retries</th>\
         <th>Affinity outcomes/s, last 5 min</th></tr>",
    );
    let retries = crate::telemetry::metrics::retries_by_balancer();
    for b in &snap.balancers {
        let host = if b.name == "*" {
            "* <span class=muted>(any other host)</span>".to_string()
        } else {
            esc(&b.name)
        };
        let pools: Vec<&str> = b.pools.iter().map(|&p| snap.pools[p].id.as_str()).collect();
        let rates = history::outcome_rates(&b.name);
        let lines: Vec<(&[f64], &str)> = rates
            .iter()
            .zip(OUTCOME_COLOURS)
            .map(|(r, c)| (r.as_slice(), c))
            .collect();
        let title = format!("{}: affinity outcomes/s over the last 5 minutes", b.name);
        let mut legend = String::new();
        for (i, (name, _)) in OUTCOME_GROUPS.iter().enumerate() {
            let _ = write!(legend, "<span class=\"key k{i}\"></span>{name}");
        }
        let _ = write!(
            out,
            "<tr><td>{host}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{} s</td>\
             <td class=num title=\"answers retried on another endpoint (retry_on_status)\">{}</td>\
             <td>{}<span class=muted>{legend}</span></td></tr>",
            esc(&pools.join(", ")),
            esc(&snap.pools[b.fallback].id),
            b.affinity.mode.as_str(),
            b.affinity.drain_duration,
            retries_cell(
                &b.retry_on.to_vec(),
                retries.get(&b.name).copied().unwrap_or(0)
            ),
            sparkline::svg(&lines, history::KEEP, &title),
        );
    }
    out.push_str("</table>");
    for (pi, eps) in pools(snap, now) {
        let p = &snap.pools[pi];
        let verdict = if p.eligible() {
            "<span class=ok>healthy</span>"
        } else {
            "<span class=bad>below minimum_origins</span>"
        };
        let _ = write!(
            out,
            "<h2>Pool {} — {verdict}</h2><table><tr><th>Endpoint</th><th>Address</th>\
             <th>Health</th><th>State</th><th>Weight</th><th>In flight</th><th>Requests</th>\
             <th>Requests/s, last 5 min</th><th></th></tr>",
            esc(&p.id)
        );
        for e in &eps {
            endpoint_row(&mut out, e);
        }
        out.push_str("</table>");
    }
    certificates(&mut out, certs, now);
    out.push_str("</main>");
    page(&out)
}

#[cfg(test)]
mod tests {
    use super::{content_security_policy, esc, locked, sha256_source};

    /// The text between `open` and the next `</`, as the browser hashes it.
    fn inline<'a>(html: &'a str, open: &str) -> &'a str {
        let start = html.find(open).map(|i| i + open.len()).unwrap_or(0);
        let len = html[start..].find("</").unwrap_or(0);
        &html[start..start + len]
    }

    #[test]
    fn policy_names_the_exact_inline_script_and_style_and_nothing_else_inline() {
        let html = locked();
        let policy = content_security_policy();
        let policy = policy.to_str().unwrap_or("");
        let script = sha256_source(inline(&html, "<script>"));
        let style = sha256_source(inline(&html, "<style>"));
        assert!(
            policy.contains(&format!("script-src '{script}';")),
            "{policy}"
        );
        assert!(
            policy.contains(&format!("style-src '{style}';")),
            "{policy}"
        );
        for directive in [
            "default-src 'none'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{policy}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(html.matches("<script").count(), 1);
        assert!(!html.contains("style="), "{html}");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn locked_page_carries_no_data_and_the_script() {
        let html = locked();
        assert!(html.contains("data-locked"));
        assert!(html.contains("sessionStorage"));
        assert!(
            !html.contains("REFRESH_MS"),
            "placeholder left in the script"
        );
    }
}
