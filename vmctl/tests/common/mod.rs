// SPDX-License-Identifier: Apache-2.0
//! Helpers shared by the process tests.

use std::path::Path;
use std::time::{Duration, Instant};

/// Waits up to 20 s until something accepts connections on the unix socket `sock`.
pub fn wait_for_socket(sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {} (vmctld did not start)", sock.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}
