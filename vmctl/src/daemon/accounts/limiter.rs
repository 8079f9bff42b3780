// SPDX-License-Identifier: Apache-2.0
//! The login rate limiter: per source address and per user name, a few free failures, then
//! an exponential back-off.
//!
//! An attempt is counted as a failure when it *begins* (and forgiven when it succeeds), so
//! attempts sent in parallel cannot slip past the limit while their password checks run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures allowed per user name before the back-off starts.
pub const FREE_PER_USER: u32 = 5;
/// Failures allowed per source address before the back-off starts (a host may have several
/// users).
pub const FREE_PER_ADDRESS: u32 = 20;
/// The first wait after the free failures; it doubles with each further failure.
pub const BASE_WAIT: Duration = Duration::from_secs(30);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// A key's failures are forgotten this long after its last one.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Most keys remembered (the oldest is dropped beyond).
const MAX_KEYS: usize = 10_000;

/// What a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// A source address.
    Address(std::net::IpAddr),
    /// A user name (as sent, whether or not such a user exists).
    User(String),
}

impl LimitKey {
    fn free(&self) -> u32 {
        match self {
            LimitKey::Address(_) => FREE_PER_ADDRESS,
            LimitKey::User(_) => FREE_PER_USER,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// The failures per key.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    entries: HashMap<LimitKey, Entry>,
}

/// How long after its last failure a key with `failures` failures (`free` of them free) is
/// blocked.
fn wait_for(failures: u32, free: u32) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let doublings = (failures - free).min(16);
    BASE_WAIT.saturating_mul(1u32 << doublings).min(MAX_WAIT)
}

impl LoginLimiter {
    /// An empty limiter.
    pub fn new() -> LoginLimiter {
        LoginLimiter::default()
    }

    /// Starts a login attempt for `keys` at `now`: `Err(wait)` if one of them is blocked
    /// (nothing is counted then), otherwise the attempt counts as a failure of each key until
    /// [`LoginLimiter::succeeded`] forgives it.
    pub fn begin(&mut self, keys: &[LimitKey], now: Instant) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        for k in keys {
            if let Some(e) = self.entries.get(k) {
                let w = wait_for(e.failures, k.free());
                if !w.is_zero() && now.saturating_duration_since(e.last) < FORGET_AFTER {
                    wait = wait.max((e.last + w).saturating_duration_since(now));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        self.make_room(now, keys.len());
        for k in keys {
            let e = self.entries.entry(k.clone()).or_insert(Entry { failures: 0, last: now });
            if now.saturating_duration_since(e.last) >= FORGET_AFTER {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
        }
        Ok(())
    }

    /// A login succeeded: its keys' failures are forgotten.
    pub fn succeeded(&mut self, keys: &[LimitKey]) {
        for k in keys {
            self.entries.remove(k);
        }
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops forgotten keys, then the oldest, until `n` more fit.
    fn make_room(&mut self, now: Instant, n: usize) {
        if self.entries.len() + n <= MAX_KEYS {
            return;
        }
        self.entries.retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
        while self.entries.len() + n > MAX_KEYS {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone()) else {
                return;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: &str) -> LimitKey {
        LimitKey::User(n.into())
    }

    fn addr(last: u8) -> LimitKey {
        LimitKey::Address(std::net::IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn five_failures_per_user_then_exponential_back_off() {
        let mut l = LoginLimiter::new();
        let t0 = Instant::now();
        let keys = [addr(1), user("alice")];
        for _ in 0..FREE_PER_USER {
            assert_eq!(l.begin(&keys, t0), Ok(()));
        }
        // The sixth at once: blocked for 30 s, and being blocked does not count.
        assert_eq!(l.begin(&keys, t0), Err(BASE_WAIT));
        assert_eq!(l.begin(&keys, t0 + Duration::from_secs(10)), Err(Duration::from_secs(20)));
        // After the wait, one more try; failing it doubles the wait.
        assert_eq!(l.begin(&keys, t0 + BASE_WAIT), Ok(()));
        let t1 = t0 + BASE_WAIT;
        assert_eq!(l.begin(&keys, t1), Err(2 * BASE_WAIT));
        assert_eq!(l.begin(&keys, t1 + 2 * BASE_WAIT), Ok(()));
        assert_eq!(l.begin(&keys, t1 + 2 * BASE_WAIT), Err(4 * BASE_WAIT));
        // Another user from the same address is not blocked (the address has 20 free).
        assert_eq!(l.begin(&[addr(1), user("bob")], t1 + 2 * BASE_WAIT), Ok(()));
        // The wait is capped.
        assert_eq!(wait_for(FREE_PER_USER + 40, FREE_PER_USER), MAX_WAIT);
    }

    #[test]
    fn an_address_is_limited_across_user_names() {
        let mut l = LoginLimiter::new();
        let t0 = Instant::now();
        for i in 0..FREE_PER_ADDRESS {
            assert_eq!(l.begin(&[addr(2), user(&format!("u{i}"))], t0), Ok(()));
        }
        assert_eq!(l.begin(&[addr(2), user("new")], t0), Err(BASE_WAIT));
        assert_eq!(l.begin(&[addr(3), user("new")], t0), Ok(()), "another address is free");
    }

    #[test]
    fn success_forgives_and_old_failures_are_forgotten() {
        let mut l = LoginLimiter::new();
        let t0 = Instant::now();
        let keys = [addr(1), user("alice")];
        for _ in 0..FREE_PER_USER {
            l.begin(&keys, t0).unwrap();
        }
        l.succeeded(&keys);
        assert!(l.is_empty());
        for _ in 0..FREE_PER_USER {
            l.begin(&keys, t0).unwrap();
        }
        assert!(l.begin(&keys, t0).is_err());
        // An hour later the count starts again from zero.
        let later = t0 + FORGET_AFTER;
        for _ in 0..FREE_PER_USER {
            assert_eq!(l.begin(&keys, later), Ok(()));
        }
        assert!(l.begin(&keys, later).is_err());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = LoginLimiter::new();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 50) {
            l.begin(&[user(&format!("u{i}"))], t0 + Duration::from_millis(i as u64)).unwrap();
        }
        assert_eq!(l.len(), MAX_KEYS);
        // The newest are kept.
        let last = format!("u{}", MAX_KEYS + 49);
        assert!(l.entries.contains_key(&user(&last)));
        assert!(!l.entries.contains_key(&user("u0")));
    }
}
