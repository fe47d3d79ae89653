//! A service that ends while tether is not shutting down ends the whole process, non-zero, so
//! that a supervisor restarts it (SPEC §1). Pingora runs each service on a runtime of its own and,
//! when one panics or returns, only logs it: the admin API would go on answering and `/status`
//! saying healthy with no proxy listening. Every service tether adds is wrapped in [`Vital`];
//! Pingora's bootstrap, which ends by design once the listening sockets are in, is not.
//! It is its own module because it is about the process, not about any one service.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::telemetry::log_sink;

/// Logs `line` as an error and ends the process with status 1, buffered access lines written
/// first. Nothing of tether keeps running after it.
pub fn end_process(line: &str) -> ! {
    log::error!("{line}");
    let _ = log_sink::flush();
    std::process::exit(1)
}

/// A service whose end, before any shutdown began, ends the process with one line naming it.
/// A normal shutdown (SIGTERM, SIGINT, SIGQUIT for an upgrade) is not an end of that kind.
pub struct Vital<S> {
    inner: S,
    /// Pingora's announcements (`Server::watch_execution_phase`): SIGINT stops the runtimes
    /// without the shutdown watch ever turning true, and only these tell it.
    phases: broadcast::Receiver<ExecutionPhase>,
    on_death: fn(&str),
}

impl<S> Vital<S> {
    /// `phases` must be subscribed before the server runs, so that it misses no announcement.
    pub fn new(inner: S, phases: broadcast::Receiver<ExecutionPhase>) -> Self {
        Vital {
            inner,
            phases,
            on_death: |line| end_process(line),
        }
    }
}

/// How a service ended too early.
#[derive(Debug, PartialEq, Eq)]
enum Death {
    Panicked(String),
    Returned,
}

impl fmt::Display for Death {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Death::Panicked(why) => write!(f, "panicked ({why})"),
            Death::Returned => f.write_str("stopped"),
        }
    }
}

/// A service's end is a death unless a shutdown had begun.
fn verdict(ended: Result<(), Box<dyn Any + Send>>, stopping: bool) -> Option<Death> {
    match (ended, stopping) {
        (_, true) => None,
        (Ok(()), false) => Some(Death::Returned),
        (Err(payload), false) => Some(Death::Panicked(panic_message(payload.as_ref()))),
    }
}

/// The text a panic was raised with (`panic!`, `expect`, `unwrap` carry a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_string()
    }
}

/// True for the phases Pingora enters once a shutdown of any kind began. Unknown later phases
/// count as shutting down: every phase after `Running` is one today.
fn is_stopping(phase: &ExecutionPhase) -> bool {
    !matches!(
        phase,
        ExecutionPhase::Setup
            | ExecutionPhase::Bootstrap
            | ExecutionPhase::BootstrapComplete
            | ExecutionPhase::Running
    )
}

/// Whether Pingora announced a shutdown phase since the last look.
fn shutdown_began(phases: &mut broadcast::Receiver<ExecutionPhase>) -> bool {
    let mut began = false;
    loop {
        match phases.try_recv() {
            Ok(phase) => began |= is_stopping(&phase),
            Err(TryRecvError::Lagged(_)) => continue,
            Err(TryRecvError::Empty | TryRecvError::Closed) => return began,
        }
    }
}

/// Polls a future with its panics caught, so that a panicking service is seen and named
/// (the future is dropped after a panic, never polled again).
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for Vital<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        let watch = shutdown.clone();
        let run = self
            .inner
            .start_service(fds, shutdown, listeners_per_fd, ready_notifier);
        let ended = CatchUnwind(run).await;
        let stopping = *watch.borrow() || shutdown_began(&mut self.phases);
        if let Some(death) = verdict(ended, stopping) {
            (self.on_death)(&format!(
                "service '{}' {death}: ending the process",
                self.inner.name()
            ));
        }
    }

    super::delegate_service_but_start!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::services::background::{background_service, BackgroundService};
    use std::sync::Mutex;
    use tokio::sync::watch;

    #[test]
    fn an_end_is_a_death_only_before_shutdown() {
        assert_eq!(verdict(Ok(()), false), Some(Death::Returned));
        assert_eq!(
            verdict(Err(Box::new("boom")), false),
            Some(Death::Panicked("boom".into()))
        );
        assert_eq!(verdict(Ok(()), true), None);
        assert_eq!(verdict(Err(Box::new("boom")), true), None);
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("formatted 7")), "formatted 7");
        assert_eq!(panic_message(&7_u32), "no message");
    }

    #[test]
    fn every_phase_after_running_is_a_shutdown() {
        assert!(!is_stopping(&ExecutionPhase::BootstrapComplete));
        assert!(!is_stopping(&ExecutionPhase::Running));
        assert!(is_stopping(&ExecutionPhase::GracefulUpgradeTransferringFds));
        assert!(is_stopping(&ExecutionPhase::GracefulTerminate));
        assert!(is_stopping(&ExecutionPhase::ShutdownStarted));
    }

    /// Lines the tests' services died with, instead of ending the test binary.
    static DEATHS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Task(fn());

    #[async_trait]
    impl BackgroundService for Task {
        async fn start(&self, _shutdown: ShutdownWatch) {
            (self.0)()
        }
    }

    /// Runs a background service doing `body` inside [`Vital`]; returns the deaths it reported.
    async fn run(
        name: &str,
        body: fn(),
        shutting_down: bool,
        phase: ExecutionPhase,
    ) -> Vec<String> {
        let (phase_tx, phases) = broadcast::channel(8);
        let _ = phase_tx.send(phase);
        let (_shutdown_tx, shutdown) = watch::channel(shutting_down);
        let mut vital = Vital::new(background_service(name, Task(body)), phases);
        vital.on_death = |line| DEATHS.lock().unwrap().push(line.to_string());
        let ready = ServiceReadyNotifier::new(watch::channel(false).0);
        vital.start_service(None, shutdown, 1, ready).await;
        let needle = format!("'BG {name}'");
        let deaths = DEATHS.lock().unwrap();
        deaths
            .iter()
            .filter(|l| l.contains(&needle))
            .cloned()
            .collect()
    }

    #[tokio::test]
    async fn a_panicking_service_is_named_with_its_panic() {
        let deaths = run(
            "boom",
            || panic!("boom at run time"),
            false,
            ExecutionPhase::Running,
        )
        .await;
        assert_eq!(
            deaths,
            ["service 'BG boom' panicked (boom at run time): ending the process"]
        );
    }

    #[tokio::test]
    async fn a_service_that_returns_while_running_is_a_death() {
        let deaths = run("quits", || {}, false, ExecutionPhase::Running).await;
        assert_eq!(deaths, ["service 'BG quits' stopped: ending the process"]);
    }

    #[tokio::test]
    async fn ends_during_a_shutdown_are_not_deaths() {
        let term = run("term", || {}, true, ExecutionPhase::GracefulTerminate).await;
        // SIGINT: the runtimes stop without the shutdown watch turning true.
        let int = run(
            "int",
            || panic!("cancelled"),
            false,
            ExecutionPhase::ShutdownStarted,
        )
        .await;
        assert!(term.is_empty() && int.is_empty(), "{term:?} {int:?}");
    }
}
