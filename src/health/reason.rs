//! The last health verdict's reason per endpoint (`pool/name`), for the status page's hover text.
//! Written by the health service after each check (and by the re-resolver when a name resolves
//! to tether itself), read by the admin page; never on the request path.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

static REASONS: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Mutex::default);

/// Records what the last check of `label` found; true when that differs from what was recorded
/// (so a caller can log a reason once rather than every round).
pub fn set(label: &str, reason: &str) -> bool {
    let mut r = REASONS.lock().unwrap_or_else(|e| e.into_inner());
    match r.get_mut(label) {
        Some(old) if old == reason => false,
        Some(old) => {
            reason.clone_into(old);
            true
        }
        None => {
            r.insert(label.to_string(), reason.to_string());
            true
        }
    }
}

/// What the last check of `label` found, if it was checked.
pub fn get(label: &str) -> Option<String> {
    REASONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(label)
        .cloned()
}
