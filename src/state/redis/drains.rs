//! Admin drains shared through Redis: queued local changes are written, the whole hash is read
//! and applied every poll, and a Redis that lost its data gets this instance's drains back.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::balancer::Snapshot;
use crate::clock::unix_now;
use crate::state::Operated;

use super::{RedisStore, StoreError, POLL_TIMEOUT};

impl RedisStore {
    /// One poll: write queued drain changes, read every drain, and apply them to the live
    /// snapshot (holding off reloads, as any operator change does).
    /// Reads get `budget`: a request's budget in steady state, so "reachable" means the same
    /// for the poll as for requests; more for the first poll, which also connects.
    pub async fn poll(&self, live: &dyn Operated, budget: Duration) {
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
            return;
        }
        let (drains_key, epoch_key) = (self.drains_key(), self.epoch_key());
        let read = self
            .run(budget, move |mut c| {
                Box::pin(async move {
                    redis::pipe()
                        .hgetall(drains_key)
                        .get(epoch_key)
                        .query_async::<(HashMap<String, u64>, Option<String>)>(&mut c)
                        .await
                })
            })
            .await;
        let Ok((drains, epoch)) = read else {
            return;
        };
        let known = self.epoch.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let lost = match (&known, &epoch) {
            (_, None) => true,
            (Some(k), Some(e)) => k != e,
            (None, Some(_)) => false,
        };
        if lost {
            // Redis has no record of the drains this instance knows: write them back first.
            if known.is_some() {
                log::warn!(
                    "state store: Redis at {} lost its data; writing this instance's drains back",
                    self.address
                );
            }
            self.seed(&live.snapshot()).await;
            return;
        }
        *self.epoch.lock().unwrap_or_else(|e| e.into_inner()) = epoch;
        if self.generation.load(Relaxed) == generation {
            live.operate(&mut |snap| apply_drains(snap, &drains, unix_now()));
        }
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
                pipe.hset_nx(&key, format!("{}/{}", p.id, e.name), e.state.drain_since())
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

/// Brings the admin drains of `snap`'s endpoints in line with `drains` (from Redis): a drain made
/// elsewhere is applied with its start time, an undrain made elsewhere lifts it.
pub fn apply_drains(snap: &Snapshot, drains: &HashMap<String, u64>, now: u64) {
    for p in &snap.pools {
        for e in &p.endpoints {
            let field = format!("{}/{}", p.id, e.name);
            match drains.get(&field) {
                Some(&since) if !e.state.admin_drained() || e.state.drain_since() != since => {
                    e.state.restore_drain(true, since, e.enabled);
                    log::info!("drained {} (an admin drain shared through Redis)", e.label);
                }
                None if e.state.admin_drained() => {
                    e.state.set_admin_drained(false);
                    e.state.run_drain_clock(e.enabled, now);
                    log::info!("undrained {} (shared through Redis)", e.label);
                }
                _ => {}
            }
        }
    }
}
