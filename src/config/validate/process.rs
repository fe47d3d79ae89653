//! The process sections: `server:`, `listeners:`, `admin:`, `limits:`.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::super::error::ConfigError;
use super::super::listener_tls::{self, CertKey};
use super::super::schema::*;

pub(super) fn server(s: &ServerSection, e: &mut Vec<ConfigError>) {
    if !(1..=1024).contains(&s.threads) {
        e.push(ConfigError::invalid(
            "server.threads",
            s.threads,
            "is outside 1..1024",
        ));
    }
    if !(1..=100_000).contains(&s.upstream_keepalive_pool_size) {
        e.push(ConfigError::invalid(
            "server.upstream_keepalive_pool_size",
            s.upstream_keepalive_pool_size,
            "is outside 1..100000",
        ));
    }
    for (field, v) in [("pid_file", &s.pid_file), ("upgrade_sock", &s.upgrade_sock)] {
        if v.is_empty() {
            e.push(ConfigError::schema(
                format!("server.{field}"),
                "must not be empty",
            ));
        }
    }
}

/// Checks the listeners; returns each one's certificates, loaded (`None` for a plain one).
pub(super) fn listeners(list: &[Listener], e: &mut Vec<ConfigError>) -> Vec<Option<Vec<CertKey>>> {
    if list.is_empty() {
        e.push(ConfigError::schema(
            "listeners",
            "at least one listener is required",
        ));
    }
    let mut seen = HashMap::new();
    for (i, l) in list.iter().enumerate() {
        let path = format!("listeners[{i}].address");
        match l.address.parse::<SocketAddr>() {
            Err(_) => e.push(ConfigError::invalid(
                &path,
                &l.address,
                "is not an ip:port address",
            )),
            Ok(addr) => {
                if let Some(first) = seen.insert(addr, i) {
                    let first = format!("listeners[{first}].address");
                    e.push(ConfigError::Duplicate {
                        path,
                        what: "address",
                        name: l.address.clone(),
                        first,
                    });
                }
            }
        }
    }
    list.iter()
        .enumerate()
        .map(|(i, l)| l.tls.as_ref().and_then(|tls| listener_tls::load(tls, i, e)))
        .collect()
}

/// The admin listener's address, and its token: required off loopback (SPEC §4), where anyone
/// who can reach the port could otherwise drain every endpoint and reload.
pub(super) fn admin_section(admin: &Admin, e: &mut Vec<ConfigError>) {
    match admin.address.parse::<SocketAddr>() {
        Err(reason) => e.push(ConfigError::invalid(
            "admin.address",
            &admin.address,
            format!("is not an ip:port address ({reason})"),
        )),
        Ok(addr) if !addr.ip().to_canonical().is_loopback() && admin.token.is_none() => {
            e.push(ConfigError::schema(
                "admin.token",
                format!(
                    "is required: admin.address {addr} is not loopback (127.0.0.0/8 or ::1), \
                     so anyone who can reach it could drain endpoints and reload"
                ),
            ));
        }
        Ok(_) => {}
    }
    if admin.token.as_ref().is_some_and(Secret::is_empty) {
        e.push(ConfigError::schema("admin.token", "is empty"));
    }
}

pub(super) fn limits(l: &Limits, e: &mut Vec<ConfigError>) {
    if !(1024..=1_048_576).contains(&l.max_request_header_bytes) {
        let v = l.max_request_header_bytes;
        e.push(ConfigError::invalid(
            "limits.max_request_header_bytes",
            v,
            "is outside 1024..1048576",
        ));
    }
    if !(1..=3600).contains(&l.request_header_timeout_seconds) {
        let v = l.request_header_timeout_seconds;
        e.push(ConfigError::invalid(
            "limits.request_header_timeout_seconds",
            v,
            "is outside 1..3600",
        ));
    }
    if !(1..=86_400).contains(&l.keepalive_timeout_seconds) {
        let v = l.keepalive_timeout_seconds;
        e.push(ConfigError::invalid(
            "limits.keepalive_timeout_seconds",
            v,
            "is outside 1..86400",
        ));
    }
    for (field, v) in [
        (
            "limits.request_body_timeout_seconds",
            l.request_body_timeout_seconds,
        ),
        ("limits.send_timeout_seconds", l.send_timeout_seconds),
    ] {
        if !(1..=3600).contains(&v) {
            e.push(ConfigError::invalid(field, v, "is outside 1..3600"));
        }
    }
    if !(1..=1000).contains(&l.max_concurrent_streams) {
        let v = l.max_concurrent_streams;
        e.push(ConfigError::invalid(
            "limits.max_concurrent_streams",
            v,
            "is outside 1..1000",
        ));
    }
    if l.max_connections == 0 {
        e.push(ConfigError::invalid(
            "limits.max_connections",
            0,
            "must be at least 1",
        ));
    }
}
