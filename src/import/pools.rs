//! Monitors and pools, field by field. Cloudflare's random ids become readable names (a pool's
//! `name`, a monitor's `description`), and the maps returned let balancers rewrite references.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::cloudflare::{unknown_fields, CfMonitor, CfPool};
use super::origins;
use super::read::{Export, Located};
use super::yaml::{Commented, Endpoint, Imported, Monitor, Pool, PoolTls};
use super::{unique_name, ImportError, Options};
use crate::config::{
    from_yaml_name, printable, yaml_names, ExpectedCodes, MonitorKind, OriginPolicy, OriginSteering,
};

/// Cloudflare monitor id → (tether monitor id, `allow_insecure`); `None` for a monitor tether
/// cannot run.
pub type MonitorIds = HashMap<String, Option<(String, bool)>>;
/// Cloudflare pool id → tether pool id.
pub type PoolIds = HashMap<String, String>;

/// Maps every monitor; returns the id map for pools.
pub fn monitors(export: &Export, out: &mut Imported, errs: &mut Vec<ImportError>) -> MonitorIds {
    let mut ids = MonitorIds::new();
    let mut taken = HashSet::new();
    for Located { at, item: m } in &export.monitors {
        if ids.contains_key(&m.id) {
            continue; // the same monitor exported twice (several files)
        }
        let desc = m.description.as_deref().unwrap_or("").trim();
        // Made from text, so always a name: never the id's own characters.
        let base = slug(desc)
            .or_else(|| slug(&format!("monitor-{}", short(&m.id))))
            .unwrap_or_else(|| "monitor".into());
        let what = format!("monitor {base:?} ({at})");
        let kind = match m.kind.as_deref() {
            None => MonitorKind::Http,
            Some(text) => match from_yaml_name::<MonitorKind>(text) {
                Some(kind) => kind,
                None => {
                    let reason = format!("type {text:?} is not supported ({}): the monitor is not written and its pools go unmonitored", yaml_names(&MonitorKind::ALL));
                    out.not_imported.push(format!("{what}: {reason}"));
                    ids.insert(m.id.clone(), None);
                    continue;
                }
            },
        };
        let id = unique_name(&base, &mut taken);
        let insecure = kind == MonitorKind::Https && m.allow_insecure == Some(true);
        ids.insert(m.id.clone(), Some((id.clone(), insecure)));
        let note = |out: &mut Imported, s: String| out.not_imported.push(format!("{what}: {s}"));
        let mut monitor = monitor(m, id, kind, &mut |s| note(out, s));
        if kind != MonitorKind::Tcp {
            if let Some(codes) = &monitor.expected_codes {
                if let Err(reason) = ExpectedCodes::parse(codes) {
                    errs.push(at.error("expected_codes", format!("{codes:?} {reason}")));
                    monitor.expected_codes = None;
                }
            }
        }
        for field in unknown_fields(&m.other) {
            note(
                out,
                format!("field {field:?} is not known to this importer"),
            );
        }
        let c = Commented::from_cloudflare(monitor, m.description.as_deref(), "monitor", &m.id);
        out.monitors.push(c);
    }
    ids
}

/// One monitor's fields; `note` receives what does not carry over.
fn monitor(m: &CfMonitor, id: String, kind: MonitorKind, note: &mut dyn FnMut(String)) -> Monitor {
    let http = kind != MonitorKind::Tcp;
    let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty() && http);
    // Cloudflare allows 0 for "1": both mean one result decides.
    let interval = m.interval.unwrap_or(60);
    let clamped = interval.clamp(1, 3600);
    if clamped != interval {
        note(format!(
            "interval {interval} is outside tether's 1..3600: written as {clamped}"
        ));
    }
    let timeout = m.timeout.unwrap_or(5);
    let timeout_ok = timeout.clamp(1, clamped);
    if timeout_ok != timeout {
        note(format!(
            "timeout {timeout} is outside 1..interval: written as {timeout_ok}"
        ));
    }
    if let Some(r) = m.retries.filter(|r| *r > 0) {
        note(format!("retries {r} (immediate re-tries of a timed-out check) has no equivalent: tether counts failed checks with consecutive_down"));
    }
    if m.follow_redirects == Some(true) {
        note("follow_redirects: tether does not follow redirects; a 3xx answer is judged by expected_codes".into());
    }
    if m.allow_insecure == Some(true) && kind == MonitorKind::Https {
        note("allow_insecure: tether's https monitor checks certificates with its pools' origin TLS settings: see those pools".into());
    }
    if let Some(zone) = m.probe_zone.as_deref().filter(|z| !z.is_empty()) {
        note(format!(
            "probe_zone {zone:?}: tether checks the endpoint directly"
        ));
    }
    Monitor {
        id,
        kind,
        method: text(&m.method),
        path: text(&m.path),
        port: m.port.unwrap_or(0),
        header: if http {
            m.header.clone().unwrap_or_default()
        } else {
            BTreeMap::new()
        },
        expected_codes: text(&m.expected_codes),
        expected_body: text(&m.expected_body),
        interval: clamped,
        timeout: timeout_ok,
        consecutive_up: m.consecutive_up.unwrap_or(1).max(1),
        consecutive_down: m.consecutive_down.unwrap_or(1).max(1),
    }
}

/// Maps every pool; returns the id map for balancers.
pub fn pools(
    export: &Export,
    monitors: &MonitorIds,
    opts: Options,
    out: &mut Imported,
    errs: &mut Vec<ImportError>,
) -> PoolIds {
    let mut ids = PoolIds::new();
    let mut taken = HashSet::new();
    for Located { at, item: p } in &export.pools {
        if ids.contains_key(&p.id) {
            continue;
        }
        let base = p.name.trim();
        if let Some(reason) = printable::name_problem(base) {
            errs.push(at.error("name", format!("{:?} {reason}", p.name)));
            // Known, so a balancer naming it is not also told the pool is missing.
            ids.insert(p.id.clone(), base.to_string());
            continue;
        }
        let name = unique_name(base, &mut taken);
        let what = format!("pool {name:?} ({at})");
        let mut notes = Vec::new();
        if name != base {
            notes.push(format!(
                "renamed from {:?}: another pool has that name",
                p.name
            ));
        }
        ids.insert(p.id.clone(), name.clone());
        let (monitor, insecure_monitor) = pool_monitor(p, monitors, &mut notes);
        let disabled_pool = p.enabled == Some(false);
        if disabled_pool {
            notes.push("the pool is disabled: tether has no pool switch, so its endpoints are written enabled: false (no new sessions)".into());
        }
        pool_notes(p, &mut notes);
        if p.origins.is_empty() {
            errs.push(at.error("origins", "is empty: a pool needs at least one origin"));
            continue;
        }
        if !origins::names_ok(p, at, errs) {
            continue;
        }
        let mut endpoint_names = HashSet::new();
        let endpoints: Vec<Endpoint> = p
            .origins
            .iter()
            .enumerate()
            .map(|(i, o)| {
                origins::endpoint(o, i, opts, disabled_pool, &mut endpoint_names, &mut notes)
            })
            .collect();
        let min = p.minimum_origins.unwrap_or(1);
        let min_ok = min.clamp(1, endpoints.len() as u64);
        if min_ok != min {
            notes.push(format!(
                "minimum_origins {min} is outside 1..{} (the origins): written as {min_ok}",
                endpoints.len()
            ));
        }
        let policy = steering_policy(p, &mut notes);
        let tls = origin_tls(opts, insecure_monitor, &mut notes);
        for n in notes {
            out.not_imported.push(format!("{what}: {n}"));
        }
        let pool = Pool {
            id: name,
            monitor,
            minimum_origins: min_ok,
            origin_steering: OriginSteering { policy },
            endpoints,
            tls,
        };
        let c = Commented::from_cloudflare(pool, p.description.as_deref(), "pool", &p.id);
        out.pools.push(c);
    }
    ids
}

/// The pool's monitor as the tether monitor id it was imported as (noting a monitor that cannot
/// run or is in no input file), and whether it was an `allow_insecure` https monitor.
fn pool_monitor(
    p: &CfPool,
    monitors: &MonitorIds,
    notes: &mut Vec<String>,
) -> (Option<String>, bool) {
    let Some(mid) = p.monitor.as_deref().filter(|m| !m.is_empty()) else {
        return (None, false);
    };
    match monitors.get(mid) {
        Some(Some((id, insecure))) => (Some(id.clone()), *insecure),
        Some(None) => {
            notes.push("its monitor cannot run in tether: the pool is written without one".into());
            (None, false)
        }
        None => {
            notes.push(format!("monitor {mid:?} is in no input file: the pool is written without a health monitor (every enabled endpoint counts as healthy); import GET /accounts/{{account}}/load_balancers/monitors too"));
            (None, false)
        }
    }
}

/// `origin_steering.policy` as tether knows it (`random` for anything else, noted), and a note
/// per steering field tether does not have.
fn steering_policy(p: &CfPool, notes: &mut Vec<String>) -> OriginPolicy {
    let text = p
        .origin_steering
        .as_ref()
        .and_then(|s| s.policy.as_deref())
        .filter(|s| !s.is_empty());
    let policy = match text.map(|t| (t, from_yaml_name::<OriginPolicy>(t))) {
        None => OriginPolicy::Random,
        Some((_, Some(policy))) => policy,
        Some((other, None)) => {
            notes.push(format!(
                "origin_steering.policy {other:?} is not supported: written as random"
            ));
            OriginPolicy::Random
        }
    };
    for field in p
        .origin_steering
        .iter()
        .flat_map(|s| unknown_fields(&s.other))
    {
        notes.push(format!("origin_steering.{field} is not supported"));
    }
    policy
}

/// The pool's `tls:` (SPEC 3.8): enabled with `--origin-tls`; certificate checks off for an
/// `allow_insecure` https monitor only while they would weaken nothing but that monitor.
fn origin_tls(opts: Options, insecure_monitor: bool, notes: &mut Vec<String>) -> Option<PoolTls> {
    let verify = match (insecure_monitor, opts.origin_tls) {
        (false, _) => None,
        (true, false) => {
            notes.push("its https monitor has allow_insecure: written as tls.verify: false (origins are reached over plain HTTP, so only the monitor is affected)".into());
            Some(false)
        }
        (true, true) => {
            notes.push("its https monitor has allow_insecure, but with --origin-tls tls.verify: false would stop checking the proxied traffic's certificates too: left verifying; set it yourself if the origins' certificates are self-signed".into());
            None
        }
    };
    let enabled = opts.origin_tls.then_some(true);
    (enabled.is_some() || verify.is_some()).then_some(PoolTls { enabled, verify })
}

/// What a pool has that tether does not do.
fn pool_notes(p: &CfPool, notes: &mut Vec<String>) {
    if let Some(g) = p.monitor_group.as_deref().filter(|g| !g.is_empty()) {
        notes.push(format!(
            "monitor_group {g:?} is not supported (one monitor per pool)"
        ));
    }
    if p.notification_email
        .as_deref()
        .is_some_and(|e| !e.is_empty())
        || p.notification_filter.as_ref().is_some_and(|f| !f.is_null())
    {
        notes.push("notification_email / notification_filter: tether does not send notifications (watch /metrics: tether_health_transitions_total)".into());
    }
    if let Some(regions) = p.check_regions.as_ref().filter(|r| !r.is_empty()) {
        notes.push(format!(
            "check_regions {regions:?}: tether checks health from itself only"
        ));
    }
    if p.latitude.is_some() || p.longitude.is_some() {
        notes.push("latitude / longitude (proximity steering) are not supported".into());
    }
    if let Some(ls) = &p.load_shedding {
        if ls.default_percent.unwrap_or(0.0) > 0.0 || ls.session_percent.unwrap_or(0.0) > 0.0 {
            notes.push("load_shedding is not supported".into());
        }
    }
    if let Some(n) = p
        .networks
        .as_ref()
        .filter(|n| n.iter().any(|x| x != "cloudflare"))
    {
        notes.push(format!("networks {n:?} are not supported"));
    }
    for field in unknown_fields(&p.other) {
        notes.push(format!("field {field:?} is not known to this importer"));
    }
}

/// A readable id from free text: lower case, runs of other characters as one `-`.
fn slug(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let out: String = out.chars().take(40).collect();
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// The first 8 characters of a Cloudflare id.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
