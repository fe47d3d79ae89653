//! Carrying state across a graceful upgrade (SPEC §5). Every process serves a unix socket beside
//! `server.upgrade_sock` (`<upgrade_sock>.state`, mode 0600); a connection gets the process's
//! [`StateImage`] — drains, drain clocks, header sessions and health verdicts — as JSON, then EOF.
//! A process started with `--upgrade` reads it once the listening sockets arrived and before its
//! listeners start, so it never serves a request without the old process's state.
//!
//! The socket may sit in a directory others can write (the default is under /tmp), so neither end
//! trusts the path: each checks the uid of the process at the other end (`SO_PEERCRED`) and talks
//! only to its own uid. An image from anyone else could drain every endpoint; an image given to
//! anyone else would hand out session ids. The old process keeps writing the state file until the
//! new one confirms it took the image over ([`ACK`]), so a stray or failed connection never leaves
//! the state file unwritten.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::image::{StateImage, VERSION};
use crate::balancer::Snapshot;

/// How long the new process waits for the old one's state.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the old process waits for the image to be read and confirmed: longer than the new
/// process waits, so a confirmation sent in time is never missed.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);
/// What the new process writes back once it parsed the image: from then on it owns the state file.
pub const ACK: &[u8] = b"taken\n";

/// Bytes of one header session in an image, at most: `["<32 hex digits>",<u64>],`.
const PIN_BYTES: u64 = 60;
/// Bytes of one endpoint in an image besides its pool id and name, at most (keys, two booleans,
/// a u64, punctuation).
const ENDPOINT_BYTES: u64 = 128;
/// Bytes of one balancer's session list besides its name and pins.
const BALANCER_BYTES: u64 = 64;
/// Room for the envelope, and for the sessions a cache briefly holds above its capacity.
const SLACK_BYTES: u64 = 1 << 20;
/// A name's bytes in JSON, at most: a control character is written as `\u00XX`.
const ESCAPED: u64 = 6;

/// The hand-over socket for an upgrade socket path.
pub fn socket_path(upgrade_sock: &str) -> PathBuf {
    PathBuf::from(format!("{upgrade_sock}.state"))
}

/// The effective uid of this process: the only uid a hand-over is made with.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why a hand-over did not happen; logged, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("no old process answers on {0} (started without one, or an older tether)")]
    NoOldProcess(String),
    #[error("{path}: the process at the other end runs as uid {uid}, not as tether's uid {own}; refused")]
    Refused { path: String, uid: u32, own: u32 },
    #[error("{path}: the old process's state is larger than the {max} bytes this config can hold (max_sessions lowered with the upgrade?)")]
    TooLarge { path: String, max: u64 },
    #[error("reading the old process's state from {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("handing state over on {path}: {reason}")]
    Serve { path: String, reason: String },
    #[error("{path}: the new process did not confirm it took the state over ({reason}); the state file is still written here")]
    NotConfirmed { path: String, reason: String },
}

/// The largest image a process with `snap`'s config takes over: every endpoint it has, and for
/// each balancer that keeps header sessions, `max_sessions` of them — what its own stores can
/// hold, so anything larger is not an image of a process like it. Names count as if every byte
/// were escaped.
pub fn image_bound(snap: &Snapshot) -> u64 {
    let endpoints = snap
        .pools
        .iter()
        .flat_map(|p| {
            p.endpoints
                .iter()
                .map(move |e| ENDPOINT_BYTES + ESCAPED * (p.id.len() + e.name.len()) as u64)
        })
        .fold(0u64, u64::saturating_add);
    let sessions = snap
        .balancers
        .iter()
        .filter(|b| b.sessions.is_some())
        .map(|b| {
            let pins = b.affinity.max_sessions.saturating_mul(PIN_BYTES);
            (BALANCER_BYTES + ESCAPED * b.name.len() as u64).saturating_add(pins)
        })
        .fold(0u64, u64::saturating_add);
    SLACK_BYTES
        .saturating_add(endpoints)
        .saturating_add(sessions)
}

/// Ok when the process at the other end of `s` runs as this process's uid.
pub fn check_peer(s: &UnixStream, path: &Path) -> Result<(), HandoverError> {
    let shown = || path.display().to_string();
    let uid = s
        .peer_cred()
        .map_err(|e| HandoverError::Read {
            path: shown(),
            reason: format!("no peer credentials: {e}"),
        })?
        .uid();
    let own = own_uid();
    if uid == own {
        Ok(())
    } else {
        Err(HandoverError::Refused {
            path: shown(),
            uid,
            own,
        })
    }
}

/// Reads the old process's state from `path` (at most `max_bytes`), only from a process of this
/// uid, and confirms it was taken over.
pub async fn fetch(path: &Path, max_bytes: u64) -> Result<StateImage, HandoverError> {
    let shown = path.display().to_string();
    let read = async {
        let mut s = UnixStream::connect(path)
            .await
            .map_err(|_| HandoverError::NoOldProcess(shown.clone()))?;
        check_peer(&s, path)?;
        let image = read_image(&mut s, &shown, max_bytes).await?;
        // An older tether closes without waiting for this; it needs no confirmation.
        if let Err(e) = s.write_all(ACK).await {
            log::debug!("confirming the hand-over on {shown}: {e}");
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

/// Reads and parses one image (up to EOF, at most `max_bytes`).
async fn read_image(
    s: &mut UnixStream,
    shown: &str,
    max_bytes: u64,
) -> Result<StateImage, HandoverError> {
    let fail = |reason: String| HandoverError::Read {
        path: shown.to_string(),
        reason,
    };
    let mut bytes = Vec::new();
    s.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(HandoverError::TooLarge {
            path: shown.to_string(),
            max: max_bytes,
        });
    }
    let image: StateImage = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
    if image.version != VERSION {
        return Err(fail(format!("state version {}", image.version)));
    }
    Ok(image)
}

/// Binds the hand-over socket at `path` (replacing a stale one), readable by this user only.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers one hand-over connection (its peer already checked) with `image`, then waits for the
/// new process's confirmation. Ok only once the state was taken over.
pub async fn serve_one(
    mut stream: UnixStream,
    image: &StateImage,
    path: &Path,
) -> Result<(), HandoverError> {
    let shown = || path.display().to_string();
    let bytes = serde_json::to_vec(image).map_err(|e| HandoverError::Serve {
        path: shown(),
        reason: e.to_string(),
    })?;
    let exchange = async {
        let serve_err = |e: std::io::Error| HandoverError::Serve {
            path: shown(),
            reason: e.to_string(),
        };
        stream.write_all(&bytes).await.map_err(serve_err)?;
        // EOF tells the new process the image is whole; the read half stays open for the ack.
        stream.shutdown().await.map_err(serve_err)?;
        let mut ack = [0u8; ACK.len()];
        let not_confirmed = |reason: String| HandoverError::NotConfirmed {
            path: shown(),
            reason,
        };
        stream
            .read_exact(&mut ack)
            .await
            .map_err(|e| not_confirmed(e.to_string()))?;
        if ack != ACK {
            return Err(not_confirmed(format!(
                "answered {:?}",
                String::from_utf8_lossy(&ack)
            )));
        }
        Ok(())
    };
    tokio::time::timeout(SERVE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(HandoverError::NotConfirmed {
                path: shown(),
                reason: format!("no confirmation within {} s", SERVE_TIMEOUT.as_secs()),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::RuntimeState;
    use crate::config::Config;

    const YAML: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
pools:
  - id: a-pool-with-a-rather-long-identifier
    endpoints:
      - { name: an-endpoint-with-a-long-name-too, address: "127.0.0.1:9001" }
      - { name: b, address: "127.0.0.1:9002" }
load_balancers:
  - name: "sessions.example.test"
    default_pools: [a-pool-with-a-rather-long-identifier]
    session_affinity: header
    session_affinity_attributes: { headers: [x-user] }
    max_sessions: 40
  - name: "*"
    default_pools: [a-pool-with-a-rather-long-identifier]
    session_affinity: cookie
"#;

    fn snap() -> Snapshot {
        crate::balancer::fixture::snapshot(YAML, 1_000)
    }

    /// The largest image `snap` can produce: every session held, every number at its widest.
    fn fullest_image(snap: &Snapshot) -> StateImage {
        let store = snap.balancers[0].sessions.as_ref().unwrap();
        for i in 0..snap.balancers[0].affinity.max_sessions {
            store.pin(
                u128::MAX - u128::from(i),
                crate::affinity::EndpointId(u64::MAX),
            );
        }
        let mut image = StateImage::capture(snap, u64::MAX, true);
        for e in &mut image.endpoints {
            e.admin_drained = false;
            e.drain_since = u64::MAX;
            e.healthy = Some(false);
        }
        image
    }

    #[test]
    fn the_bound_holds_the_fullest_image_without_its_slack_and_counts_max_sessions() {
        let snap = snap();
        let image = fullest_image(&snap);
        assert_eq!(image.sessions[0].pins.len(), 40);
        let len = serde_json::to_vec(&image).unwrap().len() as u64;
        let bound = image_bound(&snap);
        assert!(len <= bound - SLACK_BYTES, "{len} > {bound} - slack");
        // Only the header balancer's sessions count, at PIN_BYTES each.
        let more = YAML.replace("max_sessions: 40", "max_sessions: 1040");
        let bigger = Snapshot::build(
            Config::from_yaml(&more, "test").unwrap(),
            &RuntimeState::default(),
            1_000,
        );
        assert_eq!(image_bound(&bigger) - bound, 1_000 * PIN_BYTES);
    }

    /// Serves `image` on one connection at `path` as the old process does.
    async fn old_process(
        listener: UnixListener,
        image: StateImage,
        path: PathBuf,
    ) -> Result<(), HandoverError> {
        let (stream, _) = listener.accept().await.unwrap();
        check_peer(&stream, &path)?;
        serve_one(stream, &image, &path).await
    }

    #[tokio::test]
    async fn a_hand_over_within_one_uid_is_read_and_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.sock.state");
        let listener = bind(&path).unwrap();
        let image = fullest_image(&snap());
        let old = tokio::spawn(old_process(listener, image.clone(), path.clone()));
        let taken = fetch(&path, image_bound(&snap())).await.unwrap();
        assert_eq!(taken, image);
        old.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_image_above_the_bound_is_refused_and_never_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.sock.state");
        let listener = bind(&path).unwrap();
        let old = tokio::spawn(old_process(listener, fullest_image(&snap()), path.clone()));
        let got = fetch(&path, 100).await;
        assert!(
            matches!(got, Err(HandoverError::TooLarge { max: 100, .. })),
            "{got:?}"
        );
        // Not confirmed; or, had the image outgrown the socket buffer, cut off while written.
        let served = old.await.unwrap();
        assert!(
            matches!(
                served,
                Err(HandoverError::NotConfirmed { .. } | HandoverError::Serve { .. })
            ),
            "{served:?}"
        );
    }

    #[tokio::test]
    async fn a_reader_that_does_not_confirm_leaves_the_old_process_owning_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.sock.state");
        let listener = bind(&path).unwrap();
        let old = tokio::spawn(old_process(listener, StateImage::default(), path.clone()));
        let mut s = UnixStream::connect(&path).await.unwrap();
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes).await.unwrap();
        assert!(!bytes.is_empty(), "the image was sent");
        s.write_all(b"nope!\n").await.unwrap();
        drop(s);
        let served = old.await.unwrap();
        assert!(
            matches!(served, Err(HandoverError::NotConfirmed { .. })),
            "{served:?}"
        );
    }
}
