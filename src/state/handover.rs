//! Carrying state across a graceful upgrade (SPEC §5). Every process serves a unix socket beside
//! `server.upgrade_sock` (`<upgrade_sock>.state`, mode 0600); a connection gets the process's
//! [`StateImage`] — drains, drain clocks, header sessions and health verdicts — as JSON, then EOF.
//! A process started with `--upgrade` reads it once the listening sockets arrived and before its
//! listeners start, so it never serves a request without the old process's state.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::image::{StateImage, VERSION};

/// How long the new process waits for the old one's state.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a hand-over may carry (about 10 million header sessions).
const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// The hand-over socket for an upgrade socket path.
pub fn socket_path(upgrade_sock: &str) -> PathBuf {
    PathBuf::from(format!("{upgrade_sock}.state"))
}

/// Why the old process's state could not be taken over; logged, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("no old process answers on {0} (started without one, or an older tether)")]
    NoOldProcess(String),
    #[error("reading the old process's state from {path}: {reason}")]
    Read { path: String, reason: String },
}

/// Reads the old process's state from `path`.
pub async fn fetch(path: &Path) -> Result<StateImage, HandoverError> {
    let shown = path.display().to_string();
    let read = async {
        let mut s = UnixStream::connect(path)
            .await
            .map_err(|_| HandoverError::NoOldProcess(shown.clone()))?;
        let mut bytes = Vec::new();
        (&mut s)
            .take(MAX_IMAGE_BYTES)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| HandoverError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        let image: StateImage =
            serde_json::from_slice(&bytes).map_err(|e| HandoverError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        if image.version != VERSION {
            return Err(HandoverError::Read {
                path: shown.clone(),
                reason: format!("state version {}", image.version),
            });
        }
        Ok(image)
    };
    tokio::time::timeout(FETCH_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(HandoverError::Read {
                path: shown.clone(),
                reason: format!("no answer within {} s", FETCH_TIMEOUT.as_secs()),
            })
        })
}

/// Binds the hand-over socket at `path` (replacing a stale one), readable by this user only.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers one hand-over connection with `image`.
pub async fn serve_one(mut stream: UnixStream, image: &StateImage) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(image).map_err(std::io::Error::other)?;
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}
