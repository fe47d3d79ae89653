//! The running instance: the current config snapshot behind an `ArcSwap`, and the runtime state
//! that outlives snapshots. Requests load the snapshot once; a reload swaps in a new one whole.
//!
//! A reload is compile, then commit: the file is read, validated and compiled into a snapshot
//! without touching runtime state (so a failure changes nothing); only then, and with the
//! runtime registry locked, is the snapshot given its runtime state and stored. Reloads (SIGHUP,
//! `POST /reload`) and operator actions (drain, undrain) take that one lock in turn; requests
//! never take it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::balancer::{RuntimeState, Snapshot};
use crate::clock::unix_now;
use crate::config::{Config, ConfigErrors, OwnAddrs};
use crate::state::StateStore;
use crate::tls::slot::CertSlots;
use crate::via::InstanceId;

/// The running instance's config and state.
#[derive(Debug)]
pub struct Instance {
    current: ArcSwap<Snapshot>,
    pub runtime: RuntimeState,
    /// Where drains and header sessions are kept beyond memory; chosen at start.
    pub state: StateStore,
    /// What each TLS listener serves now: started from the first config, refreshed by every
    /// reload, and given the certificates the ACME service issues.
    pub cert_slots: CertSlots,
    /// The ACME service's HTTP-01 answers and reports (SPEC §3.11).
    pub acme: crate::state::acme::Acme,
    path: PathBuf,
    /// Reloads started (each takes the next number before it reads the file).
    reads: AtomicU64,
    /// The number of the reload whose snapshot is in effect; written under the registry lock.
    committed: AtomicU64,
    /// The config the process started with: its listeners, admin address and `server:` are
    /// what is actually bound and running until a graceful upgrade.
    started_with: Config,
    /// This process's id, which its `Via` carries (SPEC §3.7: loops).
    pub id: InstanceId,
    /// The addresses this process listens on (from `started_with`): an endpoint that reaches
    /// one of them is refused at reload and kept unusable when its name resolves to it later.
    pub own: OwnAddrs,
}

impl Instance {
    /// Loads `path` and builds the first snapshot.
    pub fn load(path: &Path) -> Result<Instance, ConfigErrors> {
        let runtime = RuntimeState::default();
        let config = Config::load(path)?;
        for warning in &config.warnings {
            log::warn!("{warning}");
        }
        let snapshot = Snapshot::build(config, &runtime, unix_now());
        Ok(Self::new(snapshot, runtime, path))
    }

    /// A live instance around an already built snapshot.
    pub fn new(snapshot: Snapshot, runtime: RuntimeState, path: &Path) -> Instance {
        Instance {
            state: StateStore::new(&snapshot.config.state),
            cert_slots: CertSlots::new(snapshot.all_listener_certs()),
            acme: crate::state::acme::Acme::new(&snapshot.config.listeners),
            started_with: snapshot.config.clone(),
            id: InstanceId::random(),
            own: OwnAddrs::of(&snapshot.config),
            current: ArcSwap::from_pointee(snapshot),
            runtime,
            path: path.to_path_buf(),
            reads: AtomicU64::new(0),
            committed: AtomicU64::new(0),
        }
    }

    /// The snapshot in effect now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The config file this instance reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config the process started with (see [`Instance::reload`] for what a reload cannot change).
    pub fn started_with(&self) -> &Config {
        &self.started_with
    }

    /// Re-reads the file; on success swaps the new snapshot in and returns it, on failure
    /// changes nothing.
    ///
    /// Reading, validating (DNS included) and compiling take no lock, so a slow file or
    /// resolver holds up neither other reloads nor drains. Commits run one at a time, so the
    /// snapshot stored last is the one whose runtime state the registry holds; and a reload
    /// whose read is older than one already committed does not commit (the newer file
    /// stands), so concurrent reloads end with the file as last read.
    pub fn reload(&self) -> Result<Arc<Snapshot>, ConfigErrors> {
        let ticket = self.reads.fetch_add(1, SeqCst) + 1;
        let config = Config::load(&self.path)?;
        // Validation checked the file's own listeners; these are the ones actually bound,
        // which differ until an upgrade when the file changed them.
        let looping = self.own.refuse(&config);
        if !looping.is_empty() {
            return Err(ConfigErrors(looping));
        }
        let before = self.snapshot();
        for warning in config
            .warnings
            .iter()
            .filter(|w| !before.warnings.contains(w))
        {
            log::warn!("{warning}");
        }
        let mut snapshot = Snapshot::compile(config, &self.runtime.random_keys);
        let mut registry = self.runtime.lock();
        if self.committed.load(SeqCst) > ticket {
            return Ok(self.current.load_full());
        }
        registry.adopt(&mut snapshot, unix_now());
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        self.cert_slots.refresh(snapshot.all_listener_certs());
        self.committed.store(ticket, SeqCst);
        Ok(snapshot)
    }

    /// Runs an operator's change to runtime state (drain, undrain) on the snapshot in effect,
    /// with reloads held off, so a reload cannot interleave with it and undo half of it.
    pub fn operate<R>(&self, change: impl FnOnce(&Snapshot) -> R) -> R {
        let _registry = self.runtime.lock();
        change(&self.current.load())
    }
}
