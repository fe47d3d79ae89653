//! Reading Cloudflare API exports: the `{"result": …}` envelope or the bare array/object, in any
//! number of files, each element told apart by its fields.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::cloudflare::{CfBalancer, CfMonitor, CfPool};
use super::ImportError;

/// Where an object came from: the file and its JSON path there (e.g. `result[2]`).
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: String,
    pub path: String,
}

impl Origin {
    /// An error about `sub` (a field path below this object, or "" for the object itself).
    pub fn error(&self, sub: &str, reason: impl Into<String>) -> ImportError {
        ImportError {
            file: self.file.clone(),
            path: join(&self.path, sub),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.file)
        } else {
            write!(f, "{} {}", self.file, self.path)
        }
    }
}

/// An object with the place it was read from.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub at: Origin,
    pub item: T,
}

/// Everything read from the input files, in input order.
#[derive(Debug, Default)]
pub struct Export {
    pub monitors: Vec<Located<CfMonitor>>,
    pub pools: Vec<Located<CfPool>>,
    pub balancers: Vec<Located<CfBalancer>>,
}

/// Reads every file into one [`Export`], collecting every problem found.
pub fn read_files(files: &[impl AsRef<Path>]) -> Result<Export, Vec<ImportError>> {
    let mut export = Export::default();
    let mut errs = Vec::new();
    for file in files {
        let file = file.as_ref();
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                errs.push(ImportError::file(&name, format!("cannot read: {e}")));
                continue;
            }
        };
        read_text(&text, &name, &mut export, &mut errs);
    }
    if errs.is_empty() {
        Ok(export)
    } else {
        Err(errs)
    }
}

/// Reads one file's text; `name` names it in errors.
pub fn read_text(text: &str, name: &str, export: &mut Export, errs: &mut Vec<ImportError>) {
    // Some tools save JSON with a byte order mark; serde_json does not skip it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            errs.push(ImportError::file(name, format!("is not JSON: {e}")));
            return;
        }
    };
    let Some(items) = unwrap_envelope(root, name, errs) else {
        return;
    };
    for (path, item) in items {
        let at = Origin {
            file: name.to_string(),
            path,
        };
        classify(item, at, export, errs);
    }
}

/// The objects in a document, each with its JSON path (`result[0]`, `[2]`, `result`, or "" for a
/// bare object).
fn unwrap_envelope(
    root: Value,
    name: &str,
    errs: &mut Vec<ImportError>,
) -> Option<Vec<(String, Value)>> {
    let indexed = |base: &str, items: Vec<Value>| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("{base}[{i}]"), v))
            .collect()
    };
    match root {
        Value::Object(mut map) if map.contains_key("result") => {
            if map.get("success") == Some(&Value::Bool(false)) {
                let said = map.get("errors").map(Value::to_string).unwrap_or_default();
                let reason = format!("is false: the API answered with errors {said}");
                errs.push(ImportError::at(name, "success", reason));
                return None;
            }
            match map.remove("result") {
                Some(Value::Array(items)) => Some(indexed("result", items)),
                Some(obj @ Value::Object(_)) => Some(vec![("result".into(), obj)]),
                other => {
                    let reason =
                        format!("is {}, expected a list or an object", kind(other.as_ref()));
                    errs.push(ImportError::at(name, "result", reason));
                    None
                }
            }
        }
        Value::Array(items) => Some(indexed("", items)),
        obj @ Value::Object(_) => Some(vec![(String::new(), obj)]),
        other => {
            let reason = format!(
                "is {}, expected Cloudflare's API answer (an object or a list)",
                kind(Some(&other))
            );
            errs.push(ImportError::file(name, reason));
            None
        }
    }
}

fn kind(v: Option<&Value>) -> &'static str {
    match v {
        None | Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "a list",
        Some(Value::Object(_)) => "an object",
    }
}

/// Tells a load balancer (`default_pools`), a pool (`origins`) and a monitor (`type`, `interval`,
/// `expected_codes` …) apart, and parses it.
fn classify(item: Value, at: Origin, export: &mut Export, errs: &mut Vec<ImportError>) {
    let Value::Object(map) = &item else {
        errs.push(at.error(
            "",
            format!(
                "is {}, expected a load balancer, pool or monitor object",
                kind(Some(&item))
            ),
        ));
        return;
    };
    let has = |k: &str| map.contains_key(k);
    if has("default_pools") || has("fallback_pool") {
        if let Some(lb) = parse::<CfBalancer>(item, &at, errs) {
            export.balancers.push(Located { at, item: lb });
        }
    } else if has("origins") {
        if let Some(pool) = parse::<CfPool>(item, &at, errs) {
            export.pools.push(Located { at, item: pool });
        }
    } else if [
        "type",
        "interval",
        "expected_codes",
        "retries",
        "probe_zone",
        "consecutive_up",
    ]
    .iter()
    .any(|k| has(k))
    {
        if let Some(m) = parse::<CfMonitor>(item, &at, errs) {
            export.monitors.push(Located { at, item: m });
        }
    } else {
        errs.push(at.error(
            "",
            "is not a Cloudflare load balancer (default_pools), pool (origins) or monitor (type)",
        ));
    }
}

fn parse<T: DeserializeOwned>(item: Value, at: &Origin, errs: &mut Vec<ImportError>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(item) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let inner = if inner == "." { String::new() } else { inner };
            errs.push(at.error(&inner, e.into_inner().to_string()));
            None
        }
    }
}

/// `base` + `sub` as one JSON path: `result[0]` + `origins[1].port`.
pub fn join(base: &str, sub: &str) -> String {
    match (base.is_empty(), sub.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => sub.to_string(),
        (false, false) if sub.starts_with('[') => format!("{base}{sub}"),
        (false, false) => format!("{base}.{sub}"),
    }
}
