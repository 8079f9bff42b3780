// SPDX-License-Identifier: Apache-2.0
//! `vmctl console`: the terminal in raw mode joined to a VM's console stream; Ctrl-]
//! detaches.

use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The escape byte: Ctrl-] (as in virsh and telnet).
pub const ESCAPE: u8 = 0x1d;

/// Puts stdin in raw mode while alive, if it is a terminal.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else { return RawMode(None) };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        match termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw) {
            Ok(()) => RawMode(Some(saved)),
            Err(_) => RawMode(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Splits `input` at the escape byte: the bytes to send, and whether the escape was seen.
pub fn split_escape(input: &[u8]) -> (&[u8], bool) {
    match input.iter().position(|&b| b == ESCAPE) {
        Some(i) => (&input[..i], true),
        None => (input, false),
    }
}

/// Copies the console stream to stdout and stdin to the stream until Ctrl-] or the end of
/// the stream. Returns true if the user detached.
pub async fn attach<S: AsyncRead + AsyncWrite + Unpin>(stream: S, name: &str) -> std::io::Result<bool> {
    eprint!("Connected to {name} (escape character is ^])\r\n");
    let _raw = RawMode::enter();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut stdout = tokio::io::stdout();
    let mut stdin = tokio::io::stdin();
    let output = async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            stdout.write_all(&buf[..n]).await?;
            stdout.flush().await?;
        }
    };
    let input = async {
        let mut buf = vec![0u8; 1024];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                // stdin closed (not a terminal): keep showing output.
                std::future::pending::<()>().await;
            }
            let (send, escaped) = split_escape(&buf[..n]);
            wr.write_all(send).await?;
            if escaped {
                return Ok::<bool, std::io::Error>(true);
            }
        }
    };
    let detached = tokio::select! {
        r = output => r?,
        r = input => r?,
    };
    drop(_raw);
    eprint!("\r\n{}\r\n", if detached { "Detached." } else { "The console closed (the VM stopped)." });
    Ok(detached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_ends_input() {
        assert_eq!(split_escape(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(split_escape(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(split_escape(b"\x1d"), (&b""[..], true));
    }
}
