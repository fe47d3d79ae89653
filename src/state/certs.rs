//! Where ACME account keys, certificates, order locks and HTTP-01 answers are kept (SPEC §3.11):
//! the seam between the ACME service and the state store. With the embedded store they are files
//! under `storage` ([`DirStore`]); with Redis every instance shares them (`state::redis::certs`),
//! so that one instance orders and all serve the result.

use std::fmt::Debug;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

/// A store operation failed; the text is safe to log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CertStoreError(pub String);

/// Account keys, certificates and order locks, by key (`account-…`, `cert-<first domain>`).
#[async_trait]
pub trait CertStore: Send + Sync + Debug {
    /// The value under `key`, `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CertStoreError>;

    /// Replaces the value under `key` whole: a reader sees the old value or the new one.
    async fn put(&self, key: &str, value: &[u8]) -> Result<(), CertStoreError>;

    /// Takes the order lock `key` for `holder` for `ttl`; false while another holder has it.
    async fn lock(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, CertStoreError>;

    /// Gives the lock `key` back if `holder` still has it.
    async fn unlock(&self, key: &str, holder: &str);

    /// Shares an HTTP-01 answer with the instances that may receive the validation.
    async fn put_challenge(&self, _token: &str, _answer: &str, _ttl: Duration) {}

    /// An HTTP-01 answer another instance shared.
    async fn challenge(&self, _token: &str) -> Option<String> {
        None
    }

    /// True when other instances read and write the same store (certificates are then polled).
    fn shared(&self) -> bool {
        false
    }

    /// Where the store is, for log lines (a directory, or Redis's address).
    fn describe(&self) -> String;
}

/// Files in one directory (0700), each written whole (temp file 0600, fsync, rename).
#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// The store in `dir`, created on first write.
    pub fn new(dir: impl Into<PathBuf>) -> DirStore {
        DirStore { dir: dir.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn write(&self, key: &str, value: &[u8]) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        // A directory made earlier by someone else keeps its mode; the key file must not be
        // readable by others in any case, so tighten it.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        let tmp = self.dir.join(format!(".{key}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(value)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.path(key))
    }
}

#[async_trait]
impl CertStore for DirStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CertStoreError> {
        match std::fs::read(self.path(key)) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CertStoreError(format!(
                "cannot read {}: {e}",
                self.path(key).display()
            ))),
        }
    }

    async fn put(&self, key: &str, value: &[u8]) -> Result<(), CertStoreError> {
        self.write(key, value)
            .map_err(|e| CertStoreError(format!("cannot write {}: {e}", self.path(key).display())))
    }

    /// One process orders for its own directory: the lock is always free.
    async fn lock(&self, _: &str, _: &str, _: Duration) -> Result<bool, CertStoreError> {
        Ok(true)
    }

    async fn unlock(&self, _: &str, _: &str) {}

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn writes_whole_files_0600_in_a_0700_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("acme");
        let store = DirStore::new(&dir);
        assert!(store.get("cert-a.example.com").await.unwrap().is_none());
        store.put("cert-a.example.com", b"one").await.unwrap();
        store.put("cert-a.example.com", b"two").await.unwrap();
        assert_eq!(
            store.get("cert-a.example.com").await.unwrap().unwrap(),
            b"two"
        );
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("cert-a.example.com")), 0o600);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
