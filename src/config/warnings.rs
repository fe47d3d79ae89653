//! What is valid but weaker than it looks, one line each naming the YAML path: the one road for
//! every warning about a file. `--test` prints them all and start logs them all, so an operator
//! who checks a file sees what the running process will say about it; a reload logs those the
//! config in effect did not already have (the same warning at every reload is noise).

use super::typed::Validated;
use super::{unused_parts, Config};

/// Below this many bytes a cookie key is legal but weak (HMAC-SHA256 wants 32).
const SHORT_SECRET: usize = 32;

/// The warnings of a config that passed validation, in file order; endpoint names that do not
/// resolve are added by the lookup that found them.
pub(super) fn of(valid: &Validated) -> Vec<String> {
    let mut out = Vec::new();
    secrets(&valid.file, &mut out);
    for (i, pool) in valid.pools.iter().enumerate() {
        for (j, ep) in pool.endpoints.iter().enumerate() {
            if ep.tls.enabled && !ep.tls.verify {
                out.push(format!(
                    "pools[{i}].endpoints[{j}].tls.verify: {}/{}: origin TLS with verify: false accepts any certificate",
                    pool.id, ep.name
                ));
            }
        }
    }
    out.extend(
        unused_parts(&valid.file.state)
            .into_iter()
            .map(str::to_string),
    );
    acme_alone(&valid.file, &mut out);
    out
}

/// ACME with Redis and no plain listener: names are proven by TLS-ALPN-01, which only the
/// instance that orders can answer, while the directory may reach any of them.
fn acme_alone(file: &Config, out: &mut Vec<String>) {
    let shared = file.state.store == super::StoreKind::Redis;
    if !shared || file.listeners.iter().any(|l| l.tls.is_none()) {
        return;
    }
    for (i, l) in file.listeners.iter().enumerate() {
        if l.tls.as_ref().is_some_and(|t| t.acme.is_some()) {
            out.push(format!(
                "listeners[{i}].tls.acme: no plain-HTTP listener, so names are proven by TLS-ALPN-01, \
                 which only the instance that orders answers; with several instances behind one \
                 address add a plain listener on port 80 (HTTP-01 answers are shared through Redis)"
            ));
        }
    }
}

fn secrets(file: &Config, out: &mut Vec<String>) {
    let Some(secrets) = &file.cookie_secret else {
        out.push(
            "cookie_secret is not set: a random key is used, so cookies will not survive a restart \
             and instances will not honour each other's (nor share header sessions, whose ids it \
             keys)"
                .to_string(),
        );
        return;
    };
    for (i, s) in secrets.as_slice().iter().enumerate() {
        let len = s.expose().len();
        if len < SHORT_SECRET {
            out.push(format!(
                "{} is {len} bytes; {SHORT_SECRET} or more are recommended",
                secrets.path(i)
            ));
        }
    }
}
