// SPDX-License-Identifier: Apache-2.0
//! Rate-limited logging for messages a guest can trigger at will: one line per call site per
//! second, with the number of lines suppressed since the last one, so a guest looping on a
//! bad register write cannot fill the host's disk with logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Shortest gap between two lines of one call site.
pub const INTERVAL: Duration = Duration::from_secs(1);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The state of one call site.
pub struct RateLimit {
    /// Milliseconds after [`epoch`] of the last line logged, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// A call site that has not logged yet.
    pub const fn new() -> Self {
        RateLimit { last: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// Whether the call site may log now; if so, how many lines it suppressed since its last.
    pub fn check(&self) -> Option<u64> {
        self.check_at(epoch().elapsed())
    }

    fn check_at(&self, now: Duration) -> Option<u64> {
        let now_ms = now.as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < INTERVAL.as_millis() as u64 {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Another thread may have logged in between: only the winner logs.
        if self.last.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// A `log` macro call at most once a second per call site, noting how many were suppressed:
/// `log_limited!(warn, "...", args)`. [`warn_limited!`] and [`error_limited!`] are the
/// usual forms.
#[macro_export]
macro_rules! log_limited {
    ($level:ident, $($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::RateLimit = $crate::log_limit::RateLimit::new();
        if let Some(n) = LIMIT.check() {
            if n > 0 {
                $crate::log_limit::__log::$level!("{} ({n} more like it suppressed)", format_args!($($arg)+));
            } else {
                $crate::log_limit::__log::$level!($($arg)+);
            }
        }
    }};
}

/// `log::warn!` at most once a second per call site, noting how many were suppressed. For
/// every message a guest can trigger (a bad register write, a bad descriptor, an I/O error
/// on its request).
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => { $crate::log_limited!(warn, $($arg)+) };
}

/// `log::error!` at most once a second per call site, noting how many were suppressed.
#[macro_export]
macro_rules! error_limited {
    ($($arg:tt)+) => { $crate::log_limited!(error, $($arg)+) };
}

#[doc(hidden)]
pub use log as __log;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_of_the_rest() {
        let l = RateLimit::new();
        let ms = Duration::from_millis;
        assert_eq!(l.check_at(ms(0)), Some(0));
        assert_eq!(l.check_at(ms(10)), None);
        assert_eq!(l.check_at(ms(999)), None);
        assert_eq!(l.check_at(ms(1000)), Some(2));
        assert_eq!(l.check_at(ms(1500)), None);
        assert_eq!(l.check_at(ms(5000)), Some(1));
        assert_eq!(l.check_at(ms(6000)), Some(0));
    }

    #[test]
    fn the_macros_compile_and_run() {
        for i in 0..3 {
            crate::warn_limited!("guest did something odd: {i}");
            crate::error_limited!("guest did something bad: {}", i + 1);
        }
        let r: Result<(), ()> = Err(());
        match r {
            Ok(()) => {}
            Err(()) => crate::warn_limited!("in a match arm"),
        }
    }

    #[test]
    fn threads_share_a_call_site_and_only_one_logs() {
        let l = std::sync::Arc::new(RateLimit::new());
        let logged: u32 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let l = l.clone();
                    s.spawn(move || {
                        (0..1000).filter(|_| l.check_at(Duration::from_millis(5)).is_some()).count() as u32
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(logged, 1);
        // The next line reports the 3,999 that were suppressed.
        assert_eq!(l.check_at(Duration::from_millis(2000)), Some(3999));
    }
}
