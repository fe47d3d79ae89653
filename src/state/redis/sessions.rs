//! Header sessions shared through Redis: what instances cannot agree on by themselves.
//!
//! Every instance places a new session alike, by consistent hashing of its key over the
//! configured endpoints ([`first_choice`]); only a session somewhere else — re-pinned after an
//! unhealthy, drained or failed endpoint, or first placed while its first choice could not take
//! it — needs Redis to be honoured elsewhere (SPEC §5). So a session is written only while it
//! deviates, and its key deleted when it returns to its first choice: a flood of new header
//! values writes nothing while all is well.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use redis::Value;

use crate::affinity::header_key::SessionKey;
use crate::affinity::sessions::{Pin, SessionStore};
use crate::affinity::EndpointId;
use crate::balancer::route::is_first_choice;
use crate::balancer::{Balancer, Snapshot};

use super::{shown, wrong_type, RedisStore, REFRESH};

/// A header session routing just pinned, and how it stands against its first choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    pub session: u128,
    pub endpoint: EndpointId,
    /// A session this instance did not know (not a re-pin).
    pub new: bool,
    /// `endpoint` is the session's first choice, where every instance would put it anyway.
    pub home: bool,
}

/// What Redis said about one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Found(EndpointId),
    Absent,
    /// Something tether did not write: a miss for that key, never an outage.
    Malformed,
}

impl RedisStore {
    /// Makes the local copy of the request's header session current before routing: kept when
    /// confirmed within [`REFRESH`]; otherwise read from Redis (refreshing its TTL in the same
    /// round trip). When Redis cannot be asked, the copy this instance last knew is used; a
    /// session it never knew is routed by consistent hashing of its key, the endpoint a new
    /// session would get on any instance (SPEC §5).
    pub async fn prepare(self: &Arc<Self>, snap: &Snapshot, balancer: usize, key: SessionKey) {
        let lb = &snap.balancers[balancer];
        let Some(store) = &lb.sessions else {
            return;
        };
        let a = &lb.affinity;
        let now = self.clock_ms();
        let local = store.get_pin(key.id);
        if let Some(pin) = local {
            if pin.synced_ms != 0 && now.saturating_sub(pin.synced_ms) < REFRESH.as_millis() as u64
            {
                return;
            }
        }
        if !self.is_up() {
            return;
        }
        let rkey = self.session_key(&lb.name, key.id);
        let Ok(read) = self.read_session(rkey.clone(), a.ttl).await else {
            return;
        };
        match (read, local) {
            (Read::Found(endpoint), _) => store.pin_synced(key.id, endpoint, now),
            (Read::Absent, Some(pin)) => self.absent(snap, lb, key, pin, rkey, now),
            // The local copy answers; Redis is asked again after REFRESH.
            (Read::Malformed, Some(pin)) => store.pin_synced(key.id, pin.endpoint, now),
            (Read::Absent | Read::Malformed, None) => {}
        }
    }

    /// A session this instance knows and Redis does not hold. At its first choice there is
    /// nothing to share. Away from it: written back when Redis may have lost it (it was pinned
    /// here while Redis was unreachable, or confirmed before Redis last lost data); otherwise
    /// another instance brought it home and deleted it, so it is forgotten here and placed anew.
    fn absent(
        self: &Arc<Self>,
        snap: &Snapshot,
        lb: &Balancer,
        key: SessionKey,
        pin: Pin,
        rkey: String,
        now: u64,
    ) {
        let Some(store) = &lb.sessions else {
            return;
        };
        // An endpoint the config no longer has: routing re-pins the session.
        let Some(&at) = lb.by_id.get(&pin.endpoint) else {
            return;
        };
        if is_first_choice(snap, lb, key.hash, at) {
            store.pin_synced(key.id, pin.endpoint, now);
        } else if pin.synced_ms == 0 || pin.synced_ms <= self.lost_ms.load(Relaxed) {
            store.pin_synced(key.id, pin.endpoint, now);
            self.write_session(rkey, pin.endpoint, lb.affinity.ttl, true);
        } else {
            store.forget(key.id);
        }
    }

    /// `GETEX key EX ttl`, read as data: a value that is not an endpoint id, or a key of
    /// another type, is [`Read::Malformed`] (logged once per key).
    async fn read_session(&self, rkey: String, ttl: u64) -> Result<Read, super::StoreError> {
        let read = self
            .run(self.timeout, {
                let rkey = rkey.clone();
                move |mut c| {
                    Box::pin(async move {
                        let got = redis::cmd("GETEX")
                            .arg(rkey)
                            .arg("EX")
                            .arg(ttl)
                            .query_async::<Value>(&mut c)
                            .await;
                        match got {
                            Ok(v) => Ok(parse_session(&v)),
                            Err(e) if wrong_type(&e) => Ok(Read::Malformed),
                            Err(e) => Err(e),
                        }
                    })
                }
            })
            .await?;
        if read == Read::Malformed && self.noted.first(&rkey) {
            log::warn!(
                "state store: Redis key {} does not hold an endpoint id; ignored (a miss for \
                 that session)",
                shown(rkey.as_bytes())
            );
        }
        Ok(read)
    }

    /// Pins a header session here and shares it in the background (never waited for): a
    /// session away from its first choice is written (`new`: only if no instance wrote one
    /// meanwhile, `SET NX`); a re-pin back to its first choice deletes its key, so a stale
    /// deviation does not linger; a new session at its first choice writes nothing. While
    /// Redis is unreachable the pin is kept here only, and written back once Redis answers
    /// again.
    pub fn remember(self: &Arc<Self>, balancer: &str, ttl: u64, store: &SessionStore, p: Pinned) {
        if !self.is_up() {
            store.pin(p.session, p.endpoint);
            return;
        }
        store.pin_synced(p.session, p.endpoint, self.clock_ms());
        match (p.home, p.new) {
            (true, true) => {}
            (true, false) => self.delete_session(self.session_key(balancer, p.session)),
            (false, nx) => {
                self.write_session(self.session_key(balancer, p.session), p.endpoint, ttl, nx)
            }
        }
    }

    /// `SET key endpoint EX ttl [NX]` in the background.
    fn write_session(self: &Arc<Self>, key: String, endpoint: EndpointId, ttl: u64, nx: bool) {
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me
                .run(me.timeout, move |mut c| {
                    Box::pin(async move {
                        let mut set = redis::cmd("SET");
                        set.arg(key).arg(endpoint.0).arg("EX").arg(ttl);
                        if nx {
                            set.arg("NX");
                        }
                        // NX answers nil when the key exists: not an error.
                        set.query_async::<Option<String>>(&mut c).await.map(drop)
                    })
                })
                .await;
        });
    }

    /// `DEL key` in the background.
    fn delete_session(self: &Arc<Self>, key: String) {
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me
                .run(me.timeout, move |mut c| {
                    Box::pin(
                        async move { redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await },
                    )
                })
                .await;
        });
    }
}

/// A session value as tether writes it: the endpoint id in decimal.
fn parse_session(v: &Value) -> Read {
    let number = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let id = match v {
        Value::Nil => return Read::Absent,
        Value::BulkString(b) => number(b),
        Value::SimpleString(s) => number(s.as_bytes()),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    id.map_or(Read::Malformed, |id| Read::Found(EndpointId(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_values_are_read_as_data() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(parse_session(&Value::Nil), Read::Absent);
        assert_eq!(parse_session(&bulk("42")), Read::Found(EndpointId(42)));
        assert_eq!(
            parse_session(&bulk(&u64::MAX.to_string())),
            Read::Found(EndpointId(u64::MAX))
        );
        for bad in ["", "-1", "abc", "42 ", "18446744073709551616"] {
            assert_eq!(parse_session(&bulk(bad)), Read::Malformed, "{bad:?}");
        }
        assert_eq!(parse_session(&Value::Array(vec![])), Read::Malformed);
        assert_eq!(parse_session(&Value::Int(-3)), Read::Malformed);
    }
}
