//! `monitors:`: each monitor's values parsed into a `MonitorSpec`.

use super::super::error::ConfigError;
use super::super::schema::*;
use super::super::typed::MonitorSpec;
use super::super::values::ExpectedCodes;

pub(super) fn monitor(m: &Monitor, path: &str, e: &mut Vec<ConfigError>) -> Option<MonitorSpec> {
    let mut expected_codes = Some(ExpectedCodes::default());
    if m.kind != MonitorKind::Tcp {
        if m.method.is_empty() || !m.method.bytes().all(|b| b.is_ascii_uppercase()) {
            e.push(ConfigError::invalid(
                format!("{path}.method"),
                &m.method,
                "is not an HTTP method",
            ));
        }
        if !m.path.starts_with('/') {
            e.push(ConfigError::invalid(
                format!("{path}.path"),
                &m.path,
                "must start with '/'",
            ));
        }
        expected_codes = match ExpectedCodes::parse(&m.expected_codes) {
            Ok(codes) => Some(codes),
            Err(reason) => {
                e.push(ConfigError::invalid(
                    format!("{path}.expected_codes"),
                    &m.expected_codes,
                    reason,
                ));
                None
            }
        };
        header_map(&m.header, &format!("{path}.header"), e);
    }
    if !(1..=3600).contains(&m.interval) {
        e.push(ConfigError::invalid(
            format!("{path}.interval"),
            m.interval,
            "is outside 1..3600",
        ));
    }
    if m.timeout < 1 || m.timeout > m.interval {
        let reason = format!("is outside 1..{} (the interval)", m.interval);
        e.push(ConfigError::invalid(
            format!("{path}.timeout"),
            m.timeout,
            reason,
        ));
    }
    for (field, v) in [
        ("consecutive_up", m.consecutive_up),
        ("consecutive_down", m.consecutive_down),
    ] {
        if v == 0 {
            e.push(ConfigError::invalid(
                format!("{path}.{field}"),
                v,
                "must be at least 1",
            ));
        }
    }
    Some(MonitorSpec::compile(m, expected_codes?))
}

pub(super) fn header_map(
    h: &std::collections::BTreeMap<String, Vec<String>>,
    path: &str,
    e: &mut Vec<ConfigError>,
) {
    for (name, values) in h {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            e.push(ConfigError::invalid(
                format!("{path}.{name}"),
                name,
                "is not a header name",
            ));
        }
        for (i, v) in values.iter().enumerate() {
            if http::HeaderValue::from_str(v).is_err() {
                e.push(ConfigError::invalid(
                    format!("{path}.{name}[{i}]"),
                    v,
                    "is not a valid header value",
                ));
            }
        }
    }
}
