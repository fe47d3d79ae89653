//! The process log: `env_logger` (`RUST_LOG`, `info` by default) on stderr, with access-log lines
//! batched. One `write(2)` per request cost about as much as all of tether's own routing work
//! (bench/README.md), so access lines collect in a buffer that is written out every
//! [`FLUSH_EVERY`] or when it holds [`FLUSH_AT`] bytes — as nginx's `access_log … buffer= flush=`.
//! Every other line (warnings, errors, reloads) is written at once, after any access lines
//! before it, so the order of lines is kept.

use std::cell::Cell;
use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// The longest an access line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Buffered bytes that trigger a write without waiting for the timer.
pub const FLUSH_AT: usize = 32 * 1024;

static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

thread_local! {
    /// Set by the formatter for the record being written: may it wait in the buffer?
    static DEFERRABLE: Cell<bool> = const { Cell::new(false) };
}

fn buffer() -> &'static Mutex<Vec<u8>> {
    BUFFER.get_or_init(|| Mutex::new(Vec::with_capacity(FLUSH_AT * 2)))
}

/// Writes out what is buffered. Called by the timer, by urgent lines, and at shutdown.
pub fn flush() -> io::Result<()> {
    let mut b = buffer().lock().unwrap_or_else(|e| e.into_inner());
    write_out(&mut b)
}

fn write_out(b: &mut Vec<u8>) -> io::Result<()> {
    if b.is_empty() {
        return Ok(());
    }
    let result = io::stderr().lock().write_all(b);
    b.clear();
    result
}

/// env_logger's writer: appends; writes out on `flush` unless the line may wait.
struct Sink;

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        buffer()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    // env_logger calls this after every record.
    fn flush(&mut self) -> io::Result<()> {
        let mut b = buffer().lock().unwrap_or_else(|e| e.into_inner());
        if DEFERRABLE.get() && b.len() < FLUSH_AT {
            return Ok(());
        }
        write_out(&mut b)
    }
}

/// Installs the logger. Lines look as env_logger's default: `[time LEVEL target] message`.
pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|out, record| {
            DEFERRABLE.set(record.target() == "access" && record.level() >= log::Level::Info);
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
        .init();
}

/// Writes buffered access lines out every [`FLUSH_EVERY`]. It keeps going after the shutdown
/// signal, since requests still in flight then log too; it ends with the process.
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
            let _ = flush();
        }
    }
}
