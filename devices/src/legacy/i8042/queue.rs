// SPDX-License-Identifier: Apache-2.0
//! A PS/2 device's bounded output buffer.

use std::collections::VecDeque;

/// Bytes a device can hold for the controller (real keyboards buffer 16).
pub(crate) const QUEUE_LEN: usize = 16;
/// Room kept free for command replies: input events may fill the queue only up to
/// `QUEUE_LEN - REPLY_ROOM`, so a reply (at most ACK plus three bytes) always fits.
const REPLY_ROOM: usize = 4;

/// A bounded byte queue; whole sequences are accepted or dropped, never split.
#[derive(Debug)]
pub(crate) struct ByteQueue {
    bytes: VecDeque<u8>,
    label: &'static str,
    overflow_logged: bool,
}

impl ByteQueue {
    /// An empty queue; `label` names the device in logs.
    pub(crate) fn new(label: &'static str) -> Self {
        ByteQueue { bytes: VecDeque::with_capacity(QUEUE_LEN), label, overflow_logged: false }
    }

    fn push_limited(&mut self, seq: &[u8], limit: usize) -> bool {
        if self.bytes.len() + seq.len() > limit {
            if !self.overflow_logged {
                crate::warn_limited!("{}: output buffer full, dropping {} byte(s)", self.label, seq.len());
                self.overflow_logged = true;
            }
            return false;
        }
        self.bytes.extend(seq);
        true
    }

    /// Queues a command reply; returns whether it fit.
    pub(crate) fn push_reply(&mut self, seq: &[u8]) -> bool {
        self.push_limited(seq, QUEUE_LEN)
    }

    /// Queues input data (key codes, mouse packets), leaving room for replies.
    pub(crate) fn push_input(&mut self, seq: &[u8]) -> bool {
        self.push_limited(seq, QUEUE_LEN - REPLY_ROOM)
    }

    /// Takes the oldest byte.
    pub(crate) fn pop(&mut self) -> Option<u8> {
        self.bytes.pop_front()
    }

    /// Whether a byte is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_all_or_nothing() {
        let mut q = ByteQueue::new("test");
        for _ in 0..6 {
            assert!(q.push_input(&[1, 2]));
        }
        assert_eq!(q.len(), 12);
        assert!(!q.push_input(&[3]), "input stops short of the reply room");
        assert!(q.push_reply(&[4, 5, 6]));
        assert!(!q.push_reply(&[7, 8]), "a sequence that does not fit is dropped whole");
        assert!(q.push_reply(&[9]));
        assert_eq!(q.len(), QUEUE_LEN);
        assert!(!q.push_reply(&[10]));
        assert_eq!(q.pop(), Some(1));
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
    }
}
