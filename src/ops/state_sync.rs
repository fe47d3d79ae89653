//! The background side of the state store: restore before traffic, then keep state where it
//! must be. The proxy and admin services depend on this one, so they start only after the
//! state file and (with `--upgrade`) the old process's state have been applied.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use tokio::net::UnixStream;

use crate::balancer::Snapshot;
use crate::clock::unix_now;
use crate::instance::Instance;

use crate::state::image::StateImage;
use crate::state::{file, handover};

/// How often header sessions are written to the state file (SPEC §5); drains within a tick.
const SESSIONS_EVERY: Duration = Duration::from_secs(60);
/// How often the state file checks for drain changes.
const TICK: Duration = Duration::from_millis(250);

/// Restores state at start, serves it to a successor, polls Redis, writes the state file.
pub struct StateSync {
    pub live: Arc<Instance>,
    /// Started with `--upgrade`: take the old process's state over before serving.
    pub upgrade: bool,
    /// `server.upgrade_sock`, absolute.
    pub upgrade_sock: String,
}

impl StateSync {
    pub fn new(live: Arc<Instance>, upgrade: bool, upgrade_sock: String) -> StateSync {
        StateSync {
            live,
            upgrade,
            upgrade_sock,
        }
    }

    /// Applies the state file, then the old process's state (fresher), to the live snapshot.
    async fn restore(&self, socket: &Path) {
        if let Some(path) = self.live.state.file() {
            match file::read(path) {
                Ok(Some(image)) => {
                    let a = self.live.operate(|snap| image.apply(snap));
                    log::info!(
                        "state file {}: restored {} drains and {} header sessions",
                        path.display(),
                        a.drains,
                        a.sessions
                    );
                }
                Ok(None) => log::info!("state file {} does not exist yet", path.display()),
                Err(e) => log::warn!("state file: {e}"),
            }
        }
        if self.upgrade {
            let max = handover::image_bound(&self.live.snapshot());
            match handover::fetch(socket, max).await {
                Ok(image) => {
                    let a = self.live.operate(|snap| image.apply(snap));
                    log::info!(
                        "took over the old process's state: {} drains, {} header sessions, {} unhealthy endpoints",
                        a.drains,
                        a.sessions,
                        a.health
                    );
                }
                Err(e) => log::warn!("upgrade without the old process's state: {e}"),
            }
        }
    }

    fn write_file(&self, snap: &Snapshot) {
        write_file(&self.live, snap);
    }
}

/// Writes the state file of `live` (if it has one) from `snap`, unless this process handed its
/// state to a successor, which owns the file from then on.
fn write_file(live: &Instance, snap: &Snapshot) {
    let Some(path) = live.state.file() else {
        return;
    };
    if live.state.has_handed_over() {
        return;
    }
    let image = StateImage::capture(snap, unix_now(), false);
    if let Err(e) = file::write(path, &image) {
        log::warn!("state file: {e}");
    }
}

/// The last write of the state file, after the server stopped: Pingora drops its services'
/// tasks at once when the grace period is 0, so the write in the service may not have run.
pub fn write_at_exit(live: &Instance) {
    write_file(live, &live.snapshot());
}

/// Serves `image` on one connection from a process of this uid; only once the new process
/// confirmed it took the state over does this one stop writing the state file.
async fn hand_over(live: Arc<Instance>, stream: UnixStream, image: StateImage, socket: PathBuf) {
    match handover::serve_one(stream, &image, &socket).await {
        Ok(()) => {
            live.state.handed_over();
            log::info!(
                "handed state to the new process: {} endpoints, {} header sessions",
                image.endpoints.len(),
                image.sessions.iter().map(|s| s.pins.len()).sum::<usize>()
            );
        }
        Err(e) => log::warn!("{e}"),
    }
}

impl StateSync {
    /// One round of the shared backend; what the other instances agreed on is applied to the
    /// snapshot in effect with reloads held off, as any operator change.
    async fn poll(&self, first_or_last: bool) {
        let snap = self.live.snapshot();
        if let Some(drains) = self.live.state.poll(&snap, first_or_last).await {
            let now = unix_now();
            self.live
                .operate(|snap| crate::state::redis::apply_drains(snap, &drains, now));
        }
    }
}

/// Each endpoint's admin flag and drain start: what must reach the state file within a second.
fn drain_marks(snap: &Snapshot) -> Vec<(bool, u64)> {
    snap.pools
        .iter()
        .flat_map(|p| p.endpoints.iter())
        .map(|e| (e.state.admin_drained(), e.state.drain_since()))
        .collect()
}

#[async_trait]
impl BackgroundService for StateSync {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let store = &self.live.state;
        store.start();
        // One poll before traffic, so drains shared by other instances apply from the start.
        self.poll(true).await;
        let socket = handover::socket_path(&self.upgrade_sock);
        self.restore(&socket).await;
        ready.notify_ready();

        let listener = match handover::bind(&socket) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!(
                    "cannot serve state for a future upgrade on {}: {e}",
                    socket.display()
                );
                None
            }
        };
        let mut marks = drain_marks(&self.live.snapshot());
        let mut sessions_written = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                accepted = async { listener.as_ref()?.accept().await.ok() }, if listener.is_some() => {
                    let Some((stream, _)) = accepted else { continue };
                    if let Err(e) = handover::check_peer(&stream, &socket) {
                        log::warn!("hand-over connection refused, nothing sent: {e}");
                        continue;
                    }
                    let image = StateImage::capture(&self.live.snapshot(), unix_now(), true);
                    // Its own task: a peer slow to read or confirm holds up neither drain writes
                    // nor the next connection.
                    tokio::spawn(hand_over(self.live.clone(), stream, image, socket.clone()));
                }
                _ = tick.tick() => {
                    self.poll(false).await;
                    let snap = self.live.snapshot();
                    if store.file().is_some() {
                        let now_marks = drain_marks(&snap);
                        if now_marks != marks || sessions_written.elapsed() >= SESSIONS_EVERY {
                            marks = now_marks;
                            sessions_written = Instant::now();
                            self.write_file(&snap);
                        }
                    }
                }
                _ = shutdown.changed() => {
                    // A drain made in the last moments still reaches the other instances.
                    self.poll(true).await;
                    let snap = self.live.snapshot();
                    self.write_file(&snap);
                    return;
                }
            }
        }
    }
}
