// SPDX-License-Identifier: Apache-2.0
//! VNC Authentication (RFB security type 2, RFC 6143 7.2.2): the server sends a random
//! 16-byte challenge, the client answers with it DES-encrypted (ECB, two blocks) under the
//! password, zero-padded to 8 bytes with each byte's bits reversed (as the original VNC
//! code built its DES key, and every viewer does).
//!
//! The scheme is weak: the password is at most 8 characters, and anyone who records one
//! exchange can try passwords offline. It keeps casual visitors out; it does not make a VNC
//! port safe to expose (the screen and keys are not encrypted either).
//!
//! Guessing online is slowed down: every wrong answer is reported after [`FAIL_DELAY`], and
//! after [`FREE_FAILURES`] failures in a row the server answers every attempt, right or
//! wrong, with "too many failures" until a lockout ends (1 s, doubling with each further
//! failure, at most [`MAX_LOCKOUT`]). A right password resets the count.

use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use des::cipher::{Array, BlockCipherEncrypt, KeyInit};
use des::Des;
use devices::bus::lock;

use super::rfb::{self, Version, CHALLENGE_LEN};
use super::VncPassword;

/// How long a wrong answer waits before its failed SecurityResult.
pub const FAIL_DELAY: Duration = Duration::from_secs(1);
/// Failures in a row before attempts are locked out.
pub const FREE_FAILURES: u32 = 5;
/// Longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(60);

/// Why an authentication failed; the text is the 3.8 reason string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The response does not match the password.
    #[error("authentication failed: wrong password")]
    WrongPassword,
    /// Too many failures: no attempt is checked until the lockout ends.
    #[error("too many failed VNC authentications; try again in {0} s")]
    LockedOut(u64),
}

/// The DES key VNC derives from a password: its first 8 bytes, zero-padded, each byte with
/// its bit order reversed.
fn des_key(password: &[u8]) -> [u8; 8] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password) {
        *k = p.reverse_bits();
    }
    key
}

/// The response a client with `password` gives to `challenge`.
pub fn response(password: &[u8], challenge: &[u8; CHALLENGE_LEN]) -> [u8; CHALLENGE_LEN] {
    let cipher = Des::new(&Array(des_key(password)));
    let mut out = *challenge;
    for half in out.chunks_exact_mut(8) {
        let mut block = Array::<u8, _>::default();
        block.copy_from_slice(half);
        cipher.encrypt_block(&mut block);
        half.copy_from_slice(&block);
    }
    out
}

/// Compares without stopping at the first difference.
fn same(a: &[u8; CHALLENGE_LEN], b: &[u8; CHALLENGE_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failures in a row and the lockout they caused.
#[derive(Debug, Default)]
struct Limiter {
    failures: u32,
    locked_until: Option<Instant>,
}

impl Limiter {
    /// The time left in a lockout, if one is running at `now`.
    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until.map(|t| t.saturating_duration_since(now)).filter(|d| !d.is_zero())
    }

    fn record(&mut self, ok: bool, now: Instant) {
        if ok {
            *self = Limiter::default();
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= FREE_FAILURES {
            let doublings = (self.failures - FREE_FAILURES).min(6);
            let lockout = (Duration::from_secs(1) * (1u32 << doublings)).min(MAX_LOCKOUT);
            self.locked_until = Some(now + lockout);
        }
    }
}

/// The server's authentication: a password (security type 2) or none (type None), and the
/// failure count shared by all connections.
#[derive(Debug)]
pub struct Auth {
    password: Option<VncPassword>,
    limiter: Mutex<Limiter>,
    fail_delay: Duration,
}

impl Auth {
    /// Authentication with `password`, or none.
    pub fn new(password: Option<VncPassword>) -> Self {
        Auth { password, limiter: Mutex::default(), fail_delay: FAIL_DELAY }
    }

    /// As [`Auth::new`], answering failures after `delay` (tests).
    #[cfg(test)]
    pub fn with_delay(password: Option<VncPassword>, delay: Duration) -> Self {
        Auth { fail_delay: delay, ..Auth::new(password) }
    }

    /// The one security type the server offers.
    pub fn security_type(&self) -> u8 {
        if self.password.is_some() {
            rfb::SECURITY_VNC_AUTH
        } else {
            rfb::SECURITY_NONE
        }
    }

    /// Checks a response to `challenge` at `now`, and counts the outcome.
    pub fn check(
        &self,
        challenge: &[u8; CHALLENGE_LEN],
        answer: &[u8; CHALLENGE_LEN],
        now: Instant,
    ) -> Result<(), AuthError> {
        let Some(password) = &self.password else { return Ok(()) };
        let mut limiter = lock(&self.limiter);
        if let Some(left) = limiter.locked(now) {
            return Err(AuthError::LockedOut(left.as_secs().max(1)));
        }
        let ok = same(&response(password.as_bytes(), challenge), answer);
        limiter.record(ok, now);
        if ok {
            Ok(())
        } else {
            Err(AuthError::WrongPassword)
        }
    }

    /// Runs VNC Authentication on `conn` after the client chose it: challenge, response and,
    /// on failure, the failed SecurityResult (with the reason in 3.8) after the delay. The
    /// caller sends the successful SecurityResult.
    pub fn challenge<C: Read + Write>(
        &self,
        conn: &mut C,
        version: Version,
    ) -> io::Result<Result<(), AuthError>> {
        let mut challenge = [0u8; CHALLENGE_LEN];
        getrandom::fill(&mut challenge).map_err(|e| io::Error::other(format!("no random challenge: {e}")))?;
        conn.write_all(&challenge)?;
        let mut answer = [0u8; CHALLENGE_LEN];
        conn.read_exact(&mut answer)?;
        let verdict = self.check(&challenge, &answer, Instant::now());
        if let Err(e) = &verdict {
            std::thread::sleep(self.fail_delay);
            conn.write_all(&rfb::security_result_failed(version, &e.to_string()))?;
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// Known answers computed independently with OpenSSL 3.0 (legacy provider), the key
    /// bit-reversed by hand:
    /// `openssl enc -des-ecb -provider legacy -provider default -nopad -K cea6c64ea62e0000`
    /// on the bytes 00..0f ("secret"), and `-K 0a86acacee0c4e26` on f0..ff ("Pa55w0rd").
    #[test]
    fn des_response_known_answers() {
        let mut c1 = [0u8; 16];
        for (i, b) in c1.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(des_key(b"secret"), [0xce, 0xa6, 0xc6, 0x4e, 0xa6, 0x2e, 0, 0]);
        assert_eq!(response(b"secret", &c1), hex("ee22539f33a5983ec12f9c2edbc995dd"));
        let mut c2 = [0u8; 16];
        for (i, b) in c2.iter_mut().enumerate() {
            *b = 0xf0 + i as u8;
        }
        assert_eq!(response(b"Pa55w0rd", &c2), hex("135be396fc11e7e453011ffcced95f5a"));
    }

    fn pw(s: &str) -> Option<VncPassword> {
        Some(VncPassword::new(s).unwrap())
    }

    #[test]
    fn right_password_passes_and_wrong_fails() {
        let auth = Auth::new(pw("secret"));
        assert_eq!(auth.security_type(), rfb::SECURITY_VNC_AUTH);
        let ch = [7u8; 16];
        let now = Instant::now();
        assert_eq!(auth.check(&ch, &response(b"secret", &ch), now), Ok(()));
        assert_eq!(auth.check(&ch, &response(b"secreT", &ch), now), Err(AuthError::WrongPassword));
        // A response to another challenge is no good (no replay).
        assert_eq!(auth.check(&[8u8; 16], &response(b"secret", &ch), now), Err(AuthError::WrongPassword));
        assert_eq!(Auth::new(None).security_type(), rfb::SECURITY_NONE);
    }

    #[test]
    fn failures_in_a_row_lock_out_even_the_right_password() {
        let auth = Auth::new(pw("secret"));
        let ch = [1u8; 16];
        let (good, bad) = (response(b"secret", &ch), [0u8; 16]);
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(auth.check(&ch, &bad, t0), Err(AuthError::WrongPassword));
        }
        assert_eq!(auth.check(&ch, &good, t0), Err(AuthError::LockedOut(1)));
        // After the lockout, one more failure locks out for twice as long.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(auth.check(&ch, &bad, t1), Err(AuthError::WrongPassword));
        assert_eq!(auth.check(&ch, &good, t1), Err(AuthError::LockedOut(2)));
        // The right password after the lockout resets the count.
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(auth.check(&ch, &good, t2), Ok(()));
        assert_eq!(auth.check(&ch, &bad, t2), Err(AuthError::WrongPassword));
        assert_eq!(auth.check(&ch, &good, t2), Ok(()));
        // The lockout never exceeds MAX_LOCKOUT.
        let mut l = Limiter::default();
        for _ in 0..100 {
            l.record(false, t0);
        }
        assert_eq!(l.locked(t0), Some(MAX_LOCKOUT));
    }
}
