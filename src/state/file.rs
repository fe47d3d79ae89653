//! The state file of the embedded store (`state.file`, SPEC §5): a [`StateImage`] written
//! atomically — a temporary file beside it, fsync, rename, fsync of the directory — so a crash at
//! any moment leaves either the previous file or the new one, never a torn one.

use std::io::Write;
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

/// Writes `image` to `path` atomically.
pub fn write(path: &Path, image: &StateImage) -> Result<(), FileError> {
    let err = |e: std::io::Error| FileError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let bytes = serde_json::to_vec(image).map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = temp_path(path);
    {
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    // The rename itself is durable once the directory is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
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
