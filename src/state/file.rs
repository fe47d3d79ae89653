//! The state file of the embedded store (`state.file`, SPEC §5): a [`StateImage`] written
//! atomically — a temporary file beside it, fsync, rename, fsync of the directory — so a crash at
//! any moment leaves either the previous file or the new one, never a torn one.
//!
//! The file holds session ids, and tether often runs as root: the temporary file is created new
//! (never opened if something is already there, symlink included), without following a link,
//! readable by tether's user only, so nobody who can write the directory can make tether write
//! through a planted link, and nobody else can read the result.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::image::{StateImage, VERSION};

/// Why the state file could not be used; logged, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not a tether state file ({reason}); ignored")]
    Corrupt { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// The temporary file a write goes through.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Creates `tmp` new, 0600, refusing to follow a link or to open anything already there.
fn create_private(tmp: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)
}

/// Creates the temporary file; whatever is in its place (a temp left by a crash, a planted
/// symlink) is unlinked — the link itself, never its target — and the create tried once more.
fn create_temp(tmp: &Path) -> std::io::Result<File> {
    match create_private(tmp) {
        Ok(f) => Ok(f),
        Err(first) => {
            if std::fs::symlink_metadata(tmp).is_err() {
                return Err(first);
            }
            std::fs::remove_file(tmp)?;
            create_private(tmp)
        }
    }
}

/// Writes `image` to `path` atomically; the file ends up 0600 (it is the renamed temporary).
pub fn write(path: &Path, image: &StateImage) -> Result<(), FileError> {
    let err = |e: std::io::Error| FileError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let bytes = serde_json::to_vec(image).map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = temp_path(path);
    let written = create_temp(&tmp).and_then(|mut f| {
        f.write_all(&bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // Session ids do not linger in a half-written temporary.
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    // The rename itself is durable once the directory is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads the image at `path`; `Ok(None)` when there is no file yet.
pub fn read(path: &Path) -> Result<Option<StateImage>, FileError> {
    let shown = || path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(FileError::Read {
                path: shown(),
                reason: e.to_string(),
            })
        }
    };
    let image: StateImage = serde_json::from_slice(&bytes).map_err(|e| FileError::Corrupt {
        path: shown(),
        reason: e.to_string(),
    })?;
    if image.version != VERSION {
        return Err(FileError::Corrupt {
            path: shown(),
            reason: format!("version {} (this tether reads {VERSION})", image.version),
        });
    }
    Ok(Some(image))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn image(taken_at: u64) -> StateImage {
        StateImage {
            version: VERSION,
            taken_at,
            ..StateImage::default()
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn a_link_at_the_temp_path_or_the_target_is_replaced_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, temp_path(&path)).unwrap();
        write(&path, &image(1)).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&path).unwrap(), Some(image(1)));

        // A link where the file itself goes: the rename replaces the link.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write(&path, &image(2)).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(read(&path).unwrap(), Some(image(2)));
    }

    #[test]
    fn a_stale_readable_temp_is_replaced_by_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(temp_path(&path), b"half a file from a crash").unwrap();
        std::fs::set_permissions(temp_path(&path), std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, &image(3)).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&path).unwrap(), Some(image(3)));
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn an_unremovable_temp_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::create_dir(temp_path(&path)).unwrap();
        assert!(matches!(
            write(&path, &image(4)),
            Err(FileError::Write { .. })
        ));
        assert!(temp_path(&path).is_dir(), "a directory is left alone");
    }

    #[test]
    fn written_image_reads_back_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(read(&path).unwrap().is_none(), "no file yet");
        let image = StateImage {
            version: VERSION,
            taken_at: 5,
            ..StateImage::default()
        };
        write(&path, &image).unwrap();
        assert_eq!(read(&path).unwrap(), Some(image));
        assert!(!temp_path(&path).exists(), "the temporary file is renamed");
        std::fs::write(&path, b"{\"version\": 1, \"taken").unwrap();
        assert!(matches!(read(&path), Err(FileError::Corrupt { .. })));
        std::fs::write(
            &path,
            b"{\"version\":9,\"taken_at\":0,\"endpoints\":[],\"sessions\":[]}",
        )
        .unwrap();
        assert!(matches!(read(&path), Err(FileError::Corrupt { .. })));
    }
}
