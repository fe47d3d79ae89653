//! Every certificate the TLS listeners serve, as `/status`, the status page and `/metrics` show
//! them (SPEC §3.11): names, issuer, expiry, and whether it came from the files or from ACME.

use serde_json::{json, Value};

use crate::instance::Instance;
use crate::tls::cert_info::CertInfo;
use crate::tls::slot::choose;

/// One served certificate.
#[derive(Debug, Clone)]
pub struct CertView {
    pub listener: String,
    /// `file` (cert_path) or `acme`.
    pub source: &'static str,
    pub info: CertInfo,
}

impl CertView {
    pub fn to_json(&self, now: u64) -> Value {
        json!({
            "listener": self.listener,
            "source": self.source,
            "names": self.info.names,
            "issuer": self.info.issuer,
            "not_after": self.info.not_after,
            "expires_in_seconds": self.info.not_after.saturating_sub(now),
        })
    }
}

/// Every certificate of every TLS listener: the issued one first, then the files'.
pub fn certificates(live: &Instance) -> Vec<CertView> {
    let mut out = Vec::new();
    for (listener, slot) in live.cert_slots.all() {
        let view = |source, info| CertView {
            listener: listener.to_string(),
            source,
            info,
        };
        if let Some(c) = slot.issued() {
            out.push(view("acme", CertInfo::of(&c)));
        }
        for c in slot.current().all() {
            out.push(view("file", CertInfo::of(c)));
        }
    }
    out
}

/// Each name's expiry as a handshake for it is served now (the issued certificate wins for its
/// names), for `tether_certificate_expiry_timestamp_seconds`.
pub fn served_expiries(live: &Instance) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (_, slot) in live.cert_slots.all() {
        let (files, issued) = (slot.current(), slot.issued());
        let names = issued
            .iter()
            .map(|c| &**c)
            .chain(files.all())
            .flat_map(|c| c.names.iter());
        for name in names {
            if let Some(c) = choose(&files, issued.as_deref(), Some(name)) {
                out.push((name.clone(), CertInfo::of(c).not_after));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
