//! ACME account keys, certificates, order locks and HTTP-01 answers in Redis (SPEC §3.11), so
//! that every instance sharing one Redis serves the same certificate and exactly one of them
//! orders it: the order lock is `SET NX PX` with this instance's id as its value, given back
//! only by its holder.
//!
//! Layout under `key_prefix`: `acme:<key>` (an account, a certificate bundle), `acme:lock:<key>`,
//! `acme:http01:<token>` (an answer, with a TTL).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{RedisStore, POLL_TIMEOUT};
use crate::state::certs::{CertStore, CertStoreError};

/// Gives a lock back only when it still holds `ARGV[1]`: a lock that expired and was taken by
/// another instance stays theirs.
const UNLOCK: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// The Redis store seen as a certificate store.
#[derive(Debug, Clone)]
pub struct RedisCerts(pub Arc<RedisStore>);

impl RedisCerts {
    fn key(&self, what: &str) -> String {
        format!("{}acme:{what}", self.0.cfg.key_prefix)
    }
}

fn failed(e: super::StoreError) -> CertStoreError {
    CertStoreError(format!("Redis: {e}"))
}

#[async_trait]
impl CertStore for RedisCerts {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CertStoreError> {
        let k = self.key(key);
        self.0
            .run(POLL_TIMEOUT, move |mut c| {
                Box::pin(async move {
                    redis::cmd("GET")
                        .arg(k)
                        .query_async::<Option<Vec<u8>>>(&mut c)
                        .await
                })
            })
            .await
            .map_err(failed)
    }

    async fn put(&self, key: &str, value: &[u8]) -> Result<(), CertStoreError> {
        let (k, v) = (self.key(key), value.to_vec());
        self.0
            .run(POLL_TIMEOUT, move |mut c| {
                Box::pin(async move {
                    redis::cmd("SET")
                        .arg(k)
                        .arg(v)
                        .query_async::<()>(&mut c)
                        .await
                })
            })
            .await
            .map_err(failed)
    }

    async fn lock(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, CertStoreError> {
        let (k, h) = (self.key(&format!("lock:{key}")), holder.to_string());
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.0
            .run(POLL_TIMEOUT, move |mut c| {
                Box::pin(async move {
                    // NX answers nil while another holder has it.
                    let set = redis::cmd("SET")
                        .arg(k)
                        .arg(h)
                        .arg("NX")
                        .arg("PX")
                        .arg(ms)
                        .query_async::<Option<String>>(&mut c)
                        .await?;
                    Ok(set.is_some())
                })
            })
            .await
            .map_err(failed)
    }

    async fn unlock(&self, key: &str, holder: &str) {
        let (k, h) = (self.key(&format!("lock:{key}")), holder.to_string());
        let _ = self
            .0
            .run(POLL_TIMEOUT, move |mut c| {
                Box::pin(async move {
                    redis::cmd("EVAL")
                        .arg(UNLOCK)
                        .arg(1)
                        .arg(k)
                        .arg(h)
                        .query_async::<i64>(&mut c)
                        .await
                        .map(drop)
                })
            })
            .await;
    }

    async fn put_challenge(&self, token: &str, answer: &str, ttl: Duration) {
        let (k, v) = (self.key(&format!("http01:{token}")), answer.to_string());
        let secs = ttl.as_secs().max(1);
        let _ = self
            .0
            .run(POLL_TIMEOUT, move |mut c| {
                Box::pin(async move {
                    redis::cmd("SET")
                        .arg(k)
                        .arg(v)
                        .arg("EX")
                        .arg(secs)
                        .query_async::<()>(&mut c)
                        .await
                })
            })
            .await;
    }

    async fn challenge(&self, token: &str) -> Option<String> {
        let k = self.key(&format!("http01:{token}"));
        self.0
            .run(self.0.timeout(), move |mut c| {
                Box::pin(async move {
                    redis::cmd("GET")
                        .arg(k)
                        .query_async::<Option<String>>(&mut c)
                        .await
                })
            })
            .await
            .ok()
            .flatten()
    }

    fn shared(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("Redis at {}", self.0.address())
    }
}
