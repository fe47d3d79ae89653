//! Admin drains shared through Redis: queued local changes are written, the whole hash is read
//! and applied every poll, and a Redis that lost its data gets this instance's drains back.
//!
//! The hash is read field by field: a field tether cannot use (not `<pool>/<endpoint>`, not a
//! unix second, an endpoint this config does not have) is skipped and logged once, and the
//! other drains still apply; a start in the future is taken as now, so no drain lasts forever.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use redis::Value;

use crate::balancer::Snapshot;
use crate::clock::unix_now;
use crate::state::backend::SharedDrains;

use super::{shown, RedisStore, StoreError, POLL_TIMEOUT};

impl RedisStore {
    /// One poll: write queued drain changes, read every drain, and return them for the caller
    /// to apply to the live snapshot (holding off reloads, as any operator change does).
    /// Reads get `budget`: a request's budget in steady state, so "reachable" means the same
    /// for the poll as for requests; more for the first poll, which also connects.
    pub async fn poll(&self, snap: &Snapshot, budget: Duration) -> Option<SharedDrains> {
        let generation = self.generation.load(Relaxed);
        let pending: Vec<(String, Option<u64>)> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.drain().collect()
        };
        if !pending.is_empty() && self.write_drains(&pending).await.is_err() {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (k, v) in pending {
                p.entry(k).or_insert(v);
            }
            return None;
        }
        let (drains_key, epoch_key) = (self.drains_key(), self.epoch_key());
        let read = self
            .run(budget, move |mut c| {
                Box::pin(async move {
                    // Error replies come back per command, so a key of the wrong type is data
                    // (malformed), not a failed poll.
                    let (drains, epoch) = redis::pipe()
                        .ignore_errors()
                        .hgetall(drains_key)
                        .get(epoch_key)
                        .query_async::<(Value, Value)>(&mut c)
                        .await?;
                    Ok((answer(drains)?, answer(epoch)?))
                })
            })
            .await;
        let Ok((drains, epoch)) = read else {
            return None;
        };
        let epoch = self.epoch_of(epoch);
        let known = self.epoch.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let lost = match (&known, &epoch) {
            (_, None) => true,
            (Some(k), Some(e)) => k != e,
            (None, Some(_)) => false,
        };
        if lost {
            self.lost_ms.store(self.clock_ms(), Relaxed);
            // Redis has no record of the drains this instance knows: write them back first.
            if known.is_some() {
                log::warn!(
                    "state store: Redis at {} lost its data; writing this instance's drains back",
                    self.address
                );
            }
            self.seed(snap).await;
            return None;
        }
        *self.epoch.lock().unwrap_or_else(|e| e.into_inner()) = epoch;
        let now = unix_now();
        let drains = self.drains_of(drains, snap, now)?;
        // A drain made here while the read was out is newer than what the read saw.
        (self.generation.load(Relaxed) == generation).then_some(drains)
    }

    /// The `epoch` value as text; one tether did not write (another type, say) is logged once
    /// and stands for itself, so a malformed epoch does not look like lost data every poll.
    fn epoch_of(&self, v: Value) -> Option<String> {
        match v {
            Value::Nil => None,
            Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Value::SimpleString(s) => Some(s),
            _ => {
                if self.noted.first(&self.epoch_key()) {
                    log::warn!(
                        "state store: Redis key {} is not an epoch tether wrote; kept as it is",
                        self.epoch_key()
                    );
                }
                Some("(malformed)".to_string())
            }
        }
    }

    /// The usable drains of the hash read (see the module doc); `None` when the key is not a
    /// hash at all (logged once): the drains stay as last known.
    fn drains_of(&self, v: Value, snap: &Snapshot, now: u64) -> Option<HashMap<String, u64>> {
        let Some(fields) = hash_fields(v) else {
            if self.noted.first(&self.drains_key()) {
                log::warn!(
                    "state store: Redis key {} is not a hash of drains; drains stay as last known",
                    self.drains_key()
                );
            }
            return None;
        };
        let known: HashSet<String> = snap
            .pools
            .iter()
            .flat_map(|p| p.endpoints.iter().map(|e| field_of(&p.id, &e.name)))
            .collect();
        let mut drains = HashMap::with_capacity(fields.len());
        for (field, value) in fields {
            match drain_field(&field, &value, &known) {
                Ok((name, since)) => {
                    if since > now && self.noted.first(&format!("future {name} {since}")) {
                        log::warn!(
                            "state store: the shared drain of {name} starts in the future \
                             ({since}); taken as starting now"
                        );
                    }
                    drains.insert(name, since);
                }
                Err(why) => {
                    let what = format!("{}={}", shown(&field), shown(&value));
                    if self.noted.first(&format!("drain {what}")) {
                        log::warn!(
                            "state store: skipped the field {what} of {}: {why}",
                            self.drains_key()
                        );
                    }
                }
            }
        }
        Some(drains)
    }

    async fn write_drains(&self, changes: &[(String, Option<u64>)]) -> Result<(), StoreError> {
        let key = self.drains_key();
        let mut pipe = redis::pipe();
        for (field, since) in changes {
            match since {
                Some(s) => pipe.hset(&key, field, s).ignore(),
                None => pipe.hdel(&key, field).ignore(),
            };
        }
        self.run(POLL_TIMEOUT, move |mut c| {
            Box::pin(async move { pipe.query_async::<()>(&mut c).await })
        })
        .await
    }

    /// Writes this instance's admin drains into a Redis that lost them (only where Redis has
    /// none for that endpoint), then a fresh epoch.
    async fn seed(&self, snap: &Snapshot) {
        let key = self.drains_key();
        let epoch_key = self.epoch_key();
        let epoch = format!("{:016x}", fastrand::u64(..));
        let mut pipe = redis::pipe();
        for p in &snap.pools {
            for e in p.endpoints.iter().filter(|e| e.state.admin_drained()) {
                pipe.hset_nx(&key, field_of(&p.id, &e.name), e.state.drain_since())
                    .ignore();
            }
        }
        pipe.cmd("SET")
            .arg(&epoch_key)
            .arg(&epoch)
            .arg("NX")
            .ignore();
        let _ = self
            .run(POLL_TIMEOUT, move |mut c| {
                Box::pin(async move { pipe.query_async::<()>(&mut c).await })
            })
            .await;
        // The next poll reads whichever epoch won.
        *self.epoch.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The drains hash's field for endpoint `name` of pool `pool`.
fn field_of(pool: &str, name: &str) -> String {
    format!("{pool}/{name}")
}

/// One pipelined reply: an error reply saying the key holds another type is kept as data
/// (read as malformed); any other error reply (no permission, not authenticated) fails the poll.
fn answer(v: Value) -> redis::RedisResult<Value> {
    match v {
        Value::ServerError(e) if e.code() != "WRONGTYPE" => Err(e.into()),
        v => Ok(v),
    }
}

/// The (field, value) pairs of an `HGETALL` reply (RESP2 flat array or RESP3 map); `None` when
/// the reply is not a hash.
fn hash_fields(v: Value) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let bytes = |v: Value| match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        // Nothing a drain could be: kept so the field is skipped by name, not silently.
        _ => Vec::new(),
    };
    match v {
        Value::Array(flat) if flat.len() % 2 == 0 => {
            let mut it = flat.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((bytes(k), bytes(v)));
            }
            Some(out)
        }
        Value::Map(pairs) => Some(
            pairs
                .into_iter()
                .map(|(k, v)| (bytes(k), bytes(v)))
                .collect(),
        ),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

/// One field of the drains hash: `<pool>/<endpoint>` naming an endpoint in `known`, and a
/// unix second; otherwise why it is skipped.
fn drain_field(
    field: &[u8],
    value: &[u8],
    known: &HashSet<String>,
) -> Result<(String, u64), &'static str> {
    let name = std::str::from_utf8(field)
        .ok()
        .filter(|n| {
            n.split_once('/')
                .is_some_and(|(p, e)| !p.is_empty() && !e.is_empty())
        })
        .ok_or("not <pool>/<endpoint>")?;
    let since = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or("not a unix second")?;
    if !known.contains(name) {
        return Err("no such endpoint in this config");
    }
    Ok((name.to_string(), since))
}

/// Brings the admin drains of `snap`'s endpoints in line with `drains` (from Redis): a drain made
/// elsewhere is applied with its start time, an undrain made elsewhere lifts it. A start after
/// `now` is taken as `now` (and a drain already applied here keeps its start), so a clock ahead
/// or a forged value never makes a drain that does not end.
pub fn apply_drains(snap: &Snapshot, drains: &HashMap<String, u64>, now: u64) {
    for p in &snap.pools {
        for e in &p.endpoints {
            let shared = match drains.get(&field_of(&p.id, &e.name)) {
                Some(&since) if since > now && e.state.admin_drained() => continue,
                Some(&since) => Some(since.min(now)),
                None => None,
            };
            match shared {
                Some(since) if !e.state.admin_drained() || e.state.drain_since() != since => {
                    e.state.restore(true, since, e.enabled);
                    log::info!("drained {} (an admin drain shared through Redis)", e.label);
                }
                None if e.state.admin_drained() => {
                    e.state.undrain(e.enabled, now);
                    log::info!("undrained {} (shared through Redis)", e.label);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::fixture;

    fn snap() -> Snapshot {
        let lb = "    session_affinity_attributes: { drain_duration: 300 }\n";
        fixture::snapshot(&fixture::web_ab(lb), 1_000)
    }

    #[test]
    fn drain_fields_are_read_one_by_one() {
        let known: HashSet<String> = ["web/a".to_string(), "web/b".to_string()].into();
        assert_eq!(
            drain_field(b"web/a", b"1700000000", &known),
            Ok(("web/a".to_string(), 1_700_000_000))
        );
        for (field, value) in [
            (&b"garbage"[..], &b"1"[..]),
            (b"/a", b"1"),
            (b"web/", b"1"),
            (b"web/\xff", b"1"),
            (b"web/a", b"soon"),
            (b"web/a", b"-5"),
            (b"web/a", b""),
            (b"web/z", b"1"),
            (b"other/a", b"1"),
        ] {
            assert!(
                drain_field(field, value, &known).is_err(),
                "{}={}",
                shown(field),
                shown(value)
            );
        }
    }

    #[test]
    fn hgetall_replies_of_either_protocol_are_read() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let flat = Value::Array(vec![bulk("web/a"), bulk("5"), bulk("x"), Value::Nil]);
        let fields = hash_fields(flat).unwrap();
        assert_eq!(fields[0], (b"web/a".to_vec(), b"5".to_vec()));
        assert_eq!(fields[1], (b"x".to_vec(), Vec::new()));
        let map = Value::Map(vec![(bulk("web/b"), bulk("6"))]);
        assert_eq!(hash_fields(map).unwrap().len(), 1);
        assert!(hash_fields(Value::Array(vec![bulk("odd")])).is_none());
        assert!(hash_fields(bulk("a string")).is_none());
    }

    #[test]
    fn a_drain_starting_in_the_future_starts_now_and_ends() {
        let s = snap();
        let now = 2_000;
        let drains = HashMap::from([("web/a".to_string(), now + 1_000_000)]);
        apply_drains(&s, &drains, now);
        let a = &s.pools[0].endpoints[0];
        assert!(a.state.admin_drained());
        assert_eq!(a.state.drain_since(), now, "clamped to now");
        // Later polls keep the start this instance took, so the countdown runs out.
        apply_drains(&s, &drains, now + 10);
        assert_eq!(a.state.drain_since(), now);
        assert_eq!(
            a.lifecycle(300, now + 301),
            crate::balancer::Lifecycle::Drained
        );
        // Once the shared start is in the past it is taken as it is.
        let past = HashMap::from([("web/a".to_string(), now - 5)]);
        apply_drains(&s, &past, now + 10);
        assert_eq!(a.state.drain_since(), now - 5);
        apply_drains(&s, &HashMap::new(), now + 20);
        assert!(!a.state.admin_drained(), "an undrain elsewhere lifts it");
    }
}
