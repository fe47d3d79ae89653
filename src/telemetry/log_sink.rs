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

/// Appends one `info` line of the target `access` to this thread's buffer, exactly as the
/// env_logger format below prints it (`[2026-12-03T20:00:00Z INFO  access] message`), with
/// `message` writing the message bytes. Written out with the other access lines. The caller
/// checks that the target is enabled. This skips `fmt` and env_logger's own buffer: they were
/// most of an access line's cost (bench/README.md).
pub fn access_line(message: impl FnOnce(&mut Vec<u8>)) {
    let _ = MINE.try_with(|b| {
        let mut b = lock(b);
        b.push(b'[');
        b.extend_from_slice(&timestamp_now());
        b.extend_from_slice(b" INFO  access] ");
        message(&mut b);
        b.push(b'\n');
        if b.len() >= FLUSH_AT {
            let _ = write_out(&mut b);
        }
    });
}

/// The current time as env_logger's default timestamp prints it (RFC 3339, UTC, seconds),
/// formatted once per second per thread.
fn timestamp_now() -> [u8; 20] {
    thread_local! {
        static LAST: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (secs, text) = LAST.get();
    if secs == now {
        return text;
    }
    let text = rfc3339_seconds(now);
    LAST.set((now, text));
    text
}

/// `secs` after the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, years 1970–9999).
fn rfc3339_seconds(secs: u64) -> [u8; 20] {
    // Days to civil date: Howard Hinnant's `civil_from_days`, for days since 1970-01-01.
    let days = secs / 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + u64::from(month <= 2)).min(9_999);
    let rem = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, v: u64, width: usize| {
        let mut v = v;
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, rem / 3_600, 2);
    put(14, rem / 60 % 60, 2);
    put(17, rem % 60, 2);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339_in_utc() {
        let text = |s| String::from_utf8(rfc3339_seconds(s).to_vec()).ok();
        assert_eq!(text(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(text(951_782_399).as_deref(), Some("2000-02-28T23:59:59Z"));
        assert_eq!(text(951_782_400).as_deref(), Some("2000-02-29T00:00:00Z"));
        assert_eq!(text(951_868_800).as_deref(), Some("2000-03-01T00:00:00Z"));
        assert_eq!(text(1_796_328_546).as_deref(), Some("2026-12-03T20:09:06Z"));
        assert_eq!(text(4_107_542_400).as_deref(), Some("2100-03-01T00:00:00Z"));
    }
}
