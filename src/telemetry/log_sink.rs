//! The process log: `env_logger` (`RUST_LOG`, `info` by default) on stderr, with access-log lines
//! batched. One `write(2)` per request cost about as much as all of tether's own routing work
//! (bench/README.md), so access lines collect in a buffer that is written out every
//! [`FLUSH_EVERY`] or when it holds [`FLUSH_AT`] bytes — as nginx's `access_log … buffer= flush=`.
//! Every other line (warnings, errors, reloads) is written at once, after any access lines
//! before it. Each thread buffers its own lines, so the request path takes no lock that
//! another worker holds; a flush writes each thread's lines in their order.
//!
//! One refusal writes one line (SPEC §3.7): Pingora's own warning or error about a failure
//! whose text says tether has logged the refusal ([`refusals::LOGGED`]) is dropped here, for
//! the failures no `ProxyHttp` hook sees (a connection cut while its header is read).

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::refusals;

/// The longest an access line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Buffered bytes that trigger a write without waiting for the timer.
pub const FLUSH_AT: usize = 32 * 1024;

/// A thread's buffer. Only its own thread fills it; a flush empties it from any thread.
type Buffer = Arc<Mutex<Vec<u8>>>;

/// Every thread's buffer, so a flush reaches them all. Locked when a thread logs its first
/// line and by flushes, never per line.
static BUFFERS: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());

thread_local! {
    /// Set by the formatter for the record being written: may it wait in the buffer?
    static DEFERRABLE: Cell<bool> = const { Cell::new(false) };
    /// This thread's buffer: a request logs into its own thread's, so workers never wait on
    /// each other's lines.
    static MINE: Buffer = {
        let b: Buffer = Arc::new(Mutex::new(Vec::with_capacity(FLUSH_AT * 2)));
        lock(&BUFFERS).push(b.clone());
        b
    };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes out what every thread has buffered, this thread's last. Called by the timer, by
/// urgent lines, and at shutdown.
pub fn flush() -> io::Result<()> {
    let buffers: Vec<Buffer> = lock(&BUFFERS).clone();
    let mine = MINE.try_with(Arc::clone).ok();
    let mut result = Ok(());
    let others = buffers
        .iter()
        .filter(|b| mine.as_ref().is_none_or(|m| !Arc::ptr_eq(b, m)));
    for b in others.chain(mine.as_ref()) {
        if let Err(e) = write_out(&mut lock(b)) {
            result = Err(e);
        }
    }
    result
}

fn write_out(b: &mut Vec<u8>) -> io::Result<()> {
    if b.is_empty() {
        return Ok(());
    }
    let result = io::stderr().lock().write_all(b);
    b.clear();
    result
}

/// env_logger's writer: appends to this thread's buffer; writes out on `flush` unless the
/// line may wait.
struct Sink;

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        MINE.with(|b| lock(b).extend_from_slice(data));
        Ok(data.len())
    }

    // env_logger calls this after every record.
    fn flush(&mut self) -> io::Result<()> {
        if !DEFERRABLE.get() {
            // A line that must not wait goes out after every access line buffered before it.
            return flush();
        }
        MINE.with(|b| {
            let mut b = lock(b);
            if b.len() < FLUSH_AT {
                return Ok(());
            }
            write_out(&mut b)
        })
    }
}

/// env_logger, without Pingora's duplicates of refusal lines.
struct Logger(env_logger::Logger);

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.0.matches(record) && !repeats_a_refusal(record) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Whether `record` is Pingora's line about an error that carries [`refusals::LOGGED`]. Only
/// Pingora's warnings and errors are read, formatted into a buffer each thread reuses.
fn repeats_a_refusal(record: &log::Record<'_>) -> bool {
    thread_local! {
        static TEXT: RefCell<String> = const { RefCell::new(String::new()) };
    }
    if record.level() > log::Level::Warn || !record.target().starts_with("pingora") {
        return false;
    }
    TEXT.try_with(|text| {
        let Ok(mut text) = text.try_borrow_mut() else {
            return false;
        };
        text.clear();
        let _ = write!(text, "{}", record.args());
        text.contains(refusals::LOGGED)
    })
    .unwrap_or(false)
}

/// Installs the logger. Lines look as env_logger's default: `[time LEVEL target] message`,
/// except JSON access lines, which are the bare object.
pub fn init() {
    let logger = env_logger();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Logger(logger))).is_ok() {
        log::set_max_level(max);
    }
}

fn env_logger() -> env_logger::Logger {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|out, record| {
            let target = record.target();
            let access = target == "access" || target == "access_json";
            DEFERRABLE.set(access && record.level() >= log::Level::Info);
            // A JSON access line is the whole line, so that it parses as JSON.
            if target == "access_json" {
                return writeln!(out, "{}", record.args());
            }
            writeln!(
                out,
                "[{} {:<5} {}] {}",
                out.timestamp(),
                record.level(),
                record.target(),
                record.args()
            )
        })
        .target(env_logger::Target::Pipe(Box::new(Sink)))
        .build()
}

/// Writes buffered access lines out every [`FLUSH_EVERY`], and the count of refusal lines the
/// last second left out ([`refusals::flush`]). It keeps going after the shutdown signal, since
/// requests still in flight then log too; it ends with the process.
pub struct AccessLogFlush;

#[async_trait]
impl BackgroundService for AccessLogFlush {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed(), if !shutting_down => shutting_down = true,
            }
            refusals::flush();
            let _ = flush();
        }
    }
}
