//! Every refusal (SPEC §3.7) is counted and logged through [`refuse`], so one client sending
//! garbage as fast as it can costs a few log lines a second, not a line per request: the first
//! [`LINES_PER_SECOND`] refusals of each second are logged, the rest only counted, and the
//! number left out is logged once as the next second begins (by the next refusal, or by the
//! log flush timer). The metric counts every refusal; only the log is limited.
//!
//! Refusals are logged at `warn` under the target `refused`. An error tether hands back to
//! Pingora for a refusal it has logged carries [`LOGGED`] in its text, so that Pingora's own
//! line about the same failure can be dropped (`log_sink`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::Instant;

use super::metrics;

/// Refusal lines logged per second; the rest of that second's refusals are summed in one line.
pub const LINES_PER_SECOND: u32 = 5;

/// Ends the text of an error whose refusal tether has logged itself; Pingora's line quoting
/// such an error is a duplicate and is not written.
pub const LOGGED: &str = " (refusal logged by tether)";

/// Counts a refusal under `reason` (the label of `tether_refused_requests_total`) and logs
/// `line` unless this second's share of refusal lines is used up.
pub fn refuse(reason: &'static str, line: fmt::Arguments<'_>) {
    metrics::record_refusal(reason);
    match LIMITER.admit(second()) {
        Admit::Log { left_out } => {
            report(left_out);
            log::warn!(target: "refused", "{line}");
        }
        Admit::Drop => {}
    }
}

/// Logs how many refusal lines the last second left out, if it left any out and no refusal
/// has done so since. Called by the log flush timer, so the count is never held back long.
pub fn flush() {
    report(LIMITER.close(second()));
}

fn report(left_out: u32) {
    if left_out > 0 {
        let s = if left_out == 1 { "" } else { "s" };
        log::warn!(
            target: "refused",
            "{left_out} more refusal{s} in the last second not logged (at most {LINES_PER_SECOND} lines a second; all are counted in tether_refused_requests_total)"
        );
    }
}

static LIMITER: Limiter = Limiter::new();

/// Whole seconds since the first refusal-related call: the limiter's windows.
fn second() -> u32 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    u32::try_from(START.elapsed().as_secs()).unwrap_or(u32::MAX)
}

/// What to do with one refusal's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Log it, after a line saying how many the previous window left out (when not 0).
    Log { left_out: u32 },
    /// This second's lines are used up: counted only.
    Drop,
}

/// A one-second window and the refusals seen in it, in one atomic word (second << 32 | count),
/// so every refusal lands in exactly one window and each window's excess is reported once,
/// without a lock. Clock-free: the caller passes the second.
#[derive(Debug)]
struct Limiter(AtomicU64);

const fn join(second: u32, count: u32) -> u64 {
    ((second as u64) << 32) | count as u64
}

const fn split(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

impl Limiter {
    const fn new() -> Self {
        Limiter(AtomicU64::new(0))
    }

    /// Accounts one refusal in second `now`.
    fn admit(&self, now: u32) -> Admit {
        let mut word = self.0.load(Relaxed);
        loop {
            let (second, count) = split(word);
            if second >= now {
                // This window (or a later one another thread opened) takes it. Four billion
                // refusals in one second would carry into the second; none arrive that fast.
                let (_, before) = split(self.0.fetch_add(1, Relaxed));
                return if before < LINES_PER_SECOND {
                    Admit::Log { left_out: 0 }
                } else {
                    Admit::Drop
                };
            }
            match self
                .0
                .compare_exchange_weak(word, join(now, 1), Relaxed, Relaxed)
            {
                Ok(_) => {
                    return Admit::Log {
                        left_out: count.saturating_sub(LINES_PER_SECOND),
                    }
                }
                Err(current) => word = current,
            }
        }
    }

    /// Closes a window older than `now` that left lines out, returning how many; 0 otherwise.
    fn close(&self, now: u32) -> u32 {
        let mut word = self.0.load(Relaxed);
        loop {
            let (second, count) = split(word);
            if second >= now || count <= LINES_PER_SECOND {
                return 0;
            }
            match self
                .0
                .compare_exchange_weak(word, join(now, 0), Relaxed, Relaxed)
            {
                Ok(_) => return count - LINES_PER_SECOND,
                Err(current) => word = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_of_a_second_are_logged_then_the_rest_counted_once() {
        let l = Limiter::new();
        let logged = (0..300).filter(|_| l.admit(7) != Admit::Drop).count();
        assert_eq!(logged, LINES_PER_SECOND as usize);
        assert_eq!(l.close(7), 0, "the second is not over");
        assert_eq!(l.admit(8), Admit::Log { left_out: 295 });
        assert_eq!(l.close(9), 0, "second 8 left nothing out");
        assert_eq!(l.admit(20), Admit::Log { left_out: 0 });
    }

    #[test]
    fn the_timer_reports_a_window_once_and_a_later_refusal_does_not_repeat_it() {
        let l = Limiter::new();
        for _ in 0..12 {
            l.admit(3);
        }
        assert_eq!(l.close(4), 7);
        assert_eq!(l.close(4), 0);
        assert_eq!(l.close(5), 0);
        assert_eq!(l.admit(4), Admit::Log { left_out: 0 });
        let logged = (0..10).filter(|_| l.admit(4) != Admit::Drop).count();
        assert_eq!(logged, LINES_PER_SECOND as usize - 1);
    }

    #[test]
    fn threads_racing_across_a_second_lose_no_refusal() {
        let l = std::sync::Arc::new(Limiter::new());
        let mut logged = 0;
        let mut left_out = 0;
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    let (mut logged, mut left_out) = (0u32, 0u32);
                    for i in 0..2_000u32 {
                        match l.admit(i / 500 + (t & 1)) {
                            Admit::Log { left_out: n } => {
                                logged += 1;
                                left_out += n;
                            }
                            Admit::Drop => {}
                        }
                    }
                    (logged, left_out)
                })
            })
            .collect();
        for h in handles {
            let (a, b) = h.join().unwrap();
            logged += a;
            left_out += b;
        }
        left_out += l.close(u32::MAX);
        assert_eq!(
            logged + left_out,
            8_000,
            "every refusal is logged or counted"
        );
    }
}
