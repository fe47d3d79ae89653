//! `tether import cloudflare FILE...` (SPEC §6): Cloudflare Load Balancing API exports in, a
//! tether configuration out, and everything tether does not do reported rather than dropped.
//!
//! `read` parses the JSON (envelope or bare, any order), `cloudflare` holds the API's types,
//! `pools`, `origins` and `balancers` map them field by field, `yaml` writes the result.

mod balancers;
mod cloudflare;
mod origins;
mod pools;
mod read;
mod yaml;

use std::path::Path;

pub use yaml::Imported;

/// Options of `tether import cloudflare`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Origins with port 0 get 443 (not 80) and their pools origin TLS.
    pub origin_tls: bool,
}

/// A problem that stops the import, naming the file and the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ImportError {
    pub file: String,
    /// JSON path inside the file (`result[0].default_pools[1]`); empty for the whole file.
    pub path: String,
    pub reason: String,
}

impl ImportError {
    fn file(file: &str, reason: impl Into<String>) -> Self {
        Self::at(file, "", reason)
    }

    fn at(file: &str, path: &str, reason: impl Into<String>) -> Self {
        ImportError {
            file: file.to_string(),
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

/// The YAML text and the list of what was not imported (for stderr).
#[derive(Debug)]
pub struct Output {
    pub yaml: String,
    pub not_imported: Vec<String>,
}

/// Reads Cloudflare exports from `files` and maps them; every problem is returned together.
pub fn cloudflare(files: &[impl AsRef<Path>], opts: Options) -> Result<Output, Vec<ImportError>> {
    let export = read::read_files(files)?;
    let mut imported = Imported {
        sources: files
            .iter()
            .map(|f| {
                let f = f.as_ref();
                f.file_name()
                    .unwrap_or(f.as_os_str())
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        ..Imported::default()
    };
    let mut errs = Vec::new();
    let monitor_ids = pools::monitors(&export, &mut imported, &mut errs);
    let pool_ids = pools::pools(&export, &monitor_ids, opts, &mut imported, &mut errs);
    balancers::balancers(&export, &pool_ids, &mut imported, &mut errs);
    if !errs.is_empty() {
        return Err(errs);
    }
    let yaml = yaml::write(&imported).map_err(|e| {
        vec![ImportError::file(
            "(output)",
            format!("cannot write YAML: {e}"),
        )]
    })?;
    Ok(Output {
        yaml,
        not_imported: imported.not_imported,
    })
}

/// A name unique among `taken`: `base`, else `base-2`, `base-3` …
fn unique_name(base: &str, taken: &mut std::collections::HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

#[cfg(test)]
mod tests;
