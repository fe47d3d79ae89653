//! `GET /` on the admin listener: the status for a person (SPEC §4). It is rendered on the
//! server and refreshes itself with a `<meta http-equiv="refresh">`, so it needs no script, no
//! external asset and no network beyond the admin listener: it works offline and behind a tunnel.

use std::fmt::Write;

use crate::balancer::Snapshot;

use super::status::{pools, EndpointView};

/// Seconds between the page's self-refreshes; a drain countdown moves visibly.
const REFRESH_SECONDS: u32 = 2;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;background:#fff;min-width:40em}\
th,td{border:1px solid #ddd;padding:.3em .7em;text-align:left}th{background:#f0f0f0}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#176f2c;font-weight:600}.bad{color:#b3261e;font-weight:600}.warn{color:#8a5a00;font-weight:600}\
.muted{color:#777}";

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn endpoint_row(out: &mut String, e: &EndpointView) {
    let health = if e.healthy {
        "<span class=ok>healthy</span>"
    } else {
        "<span class=bad>unhealthy</span>"
    };
    let state = match (e.state, e.drain_remaining) {
        ("serving", _) => "<span class=ok>serving</span>".to_string(),
        ("draining", Some(s)) => format!("<span class=warn>draining, {s} s left</span>"),
        (other, _) => format!("<span class=muted>{other}</span>"),
    };
    let how = if e.admin_drained {
        " <span class=muted>(admin API)</span>"
    } else {
        ""
    };
    let _ = write!(
        out,
        "<tr><td>{}</td><td>{}</td><td>{health}</td><td>{state}{how}</td>\
         <td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
        esc(&e.name),
        esc(&e.address),
        e.weight,
        e.inflight,
        e.requests
    );
}

/// The whole page for `snap` at unix time `now`.
pub fn render(snap: &Snapshot, now: u64) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta http-equiv=refresh content={REFRESH_SECONDS}>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>tether status</title><style>{STYLE}</style></head><body>\
         <h1>tether</h1><p class=muted>Refreshes every {REFRESH_SECONDS} s. \
         Machine-readable: <a href=/status>/status</a>, <a href=/metrics>/metrics</a>.</p>\
         <h2>Load balancers</h2><table><tr><th>Host</th><th>Pools</th><th>Fallback</th>\
         <th>Affinity</th><th>Drain duration</th></tr>"
    );
    for b in &snap.balancers {
        let host = if b.name == "*" {
            "* <span class=muted>(any other host)</span>".to_string()
        } else {
            esc(&b.name)
        };
        let pools: Vec<&str> = b.pools.iter().map(|&p| snap.pools[p].id.as_str()).collect();
        let _ = write!(
            out,
            "<tr><td>{host}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{} s</td></tr>",
            esc(&pools.join(", ")),
            esc(&snap.pools[b.fallback].id),
            b.affinity.mode.as_str(),
            b.affinity.drain_duration
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
             <th>Health</th><th>State</th><th>Weight</th><th>In flight</th><th>Requests</th></tr>",
            esc(&p.id)
        );
        for e in &eps {
            endpoint_row(&mut out, e);
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
