// SPDX-License-Identifier: Apache-2.0
//! The `--vnc` address: `HOST:PORT`, `:N` (display N: 127.0.0.1, port 5900+N, as QEMU
//! numbers displays) or `unix:PATH`, with the option `,allow-remote`.
//!
//! In the JSON configuration it is the same string. The VNC Authentication password
//! ([`VncPassword`]) is a separate field (`vnc_password`), never a flag's value: argv is
//! readable by every user of the host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// First port of the VNC display numbers.
pub const BASE_PORT: u16 = 5900;

/// Where the VNC server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VncListen {
    /// A TCP address; only loopback unless `allow_remote`.
    Tcp {
        /// Address and port.
        addr: SocketAddr,
        /// The user accepted an address others can reach.
        allow_remote: bool,
    },
    /// A unix socket path (mode 0600).
    Unix(PathBuf),
}

const NO_AUTH: &str = "the VNC server has no authentication and no encryption: anyone who reaches it \
                       sees the screen and types on the guest's keyboard";

impl std::str::FromStr for VncListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let addr = parts.next().unwrap_or_default();
        let mut allow_remote = false;
        for opt in parts {
            match opt {
                "allow-remote" => allow_remote = true,
                _ => return Err(format!("unknown option '{opt}' in '{s}'; the only option is allow-remote")),
            }
        }
        if let Some(path) = addr.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("'unix:' needs a path, e.g. unix:/run/vm1-vnc.sock".into());
            }
            return Ok(VncListen::Unix(PathBuf::from(path)));
        }
        let usage = || {
            format!(
                "'{s}' is not HOST:PORT, :DISPLAY or unix:PATH (e.g. 127.0.0.1:5900, :0, unix:/tmp/vnc.sock)"
            )
        };
        let addr = if let Some(display) = addr.strip_prefix(':') {
            let n: u16 = display.parse().map_err(|_| usage())?;
            let port = BASE_PORT
                .checked_add(n)
                .ok_or_else(|| format!("display {n} is too large; use 0 to {}", u16::MAX - BASE_PORT))?;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
        } else if let Some(port) = addr.strip_prefix("localhost:") {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port.parse().map_err(|_| usage())?)
        } else {
            addr.parse::<SocketAddr>().map_err(|_| usage())?
        };
        if !addr.ip().is_loopback() && !allow_remote {
            return Err(format!(
                "{} is not a loopback address and {NO_AUTH}; listen on 127.0.0.1 (and tunnel, e.g. \
                 ssh -L 5900:127.0.0.1:5900), or add ,allow-remote to accept that risk",
                addr.ip()
            ));
        }
        Ok(VncListen::Tcp { addr, allow_remote })
    }
}

impl fmt::Display for VncListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VncListen::Tcp { addr, allow_remote } => {
                write!(f, "{addr}{}", if *allow_remote { ",allow-remote" } else { "" })
            }
            VncListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Longest VNC Authentication password: the protocol uses it as an 8-byte DES key.
pub const MAX_PASSWORD_LEN: usize = 8;

/// A VNC Authentication password: 1 to [`MAX_PASSWORD_LEN`] printable ASCII characters
/// (space to `~`). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VncPassword(String);

impl VncPassword {
    /// Checks `s`; the error says what is wrong and what is accepted.
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the VNC password is empty; use 1 to 8 printable ASCII characters".into());
        }
        if s.len() > MAX_PASSWORD_LEN {
            return Err(format!(
                "the VNC password is {} bytes long; VNC authentication uses at most {MAX_PASSWORD_LEN} \
                 (a DES key), so use a password of 1 to {MAX_PASSWORD_LEN} printable ASCII characters",
                s.len()
            ));
        }
        if !s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err("the VNC password has a character that is not printable ASCII; use only \
                        characters from space to '~'"
                .into());
        }
        Ok(VncPassword(s.to_string()))
    }

    /// The password's bytes (the DES key before padding).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for VncPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VncPassword(<hidden>)")
    }
}

impl TryFrom<String> for VncPassword {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        VncPassword::new(&s)
    }
}

impl From<VncPassword> for String {
    fn from(p: VncPassword) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_1_to_8_printable_ascii() {
        assert_eq!(VncPassword::new("secret").unwrap().as_bytes(), b"secret");
        assert!(VncPassword::new("12345678").is_ok());
        assert!(VncPassword::new("a b~").is_ok());
        let e = VncPassword::new("123456789").unwrap_err();
        assert!(e.contains("9 bytes") && e.contains("at most 8"), "{e}");
        assert!(VncPassword::new("").unwrap_err().contains("empty"));
        assert!(VncPassword::new("pass\n").unwrap_err().contains("printable"));
        assert!(VncPassword::new("pässe").unwrap_err().contains("printable"));
        assert_eq!(format!("{:?}", VncPassword::new("secret").unwrap()), "VncPassword(<hidden>)");
        let e = serde_json::from_str::<VncPassword>("\"toolongpassword\"").unwrap_err().to_string();
        assert!(e.contains("at most 8"), "{e}");
    }

    fn tcp(s: &str) -> SocketAddr {
        match s.parse::<VncListen>().unwrap() {
            VncListen::Tcp { addr, .. } => addr,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tcp_forms() {
        assert_eq!(tcp("127.0.0.1:5900"), "127.0.0.1:5900".parse().unwrap());
        assert_eq!(tcp(":0"), "127.0.0.1:5900".parse().unwrap());
        assert_eq!(tcp(":7"), "127.0.0.1:5907".parse().unwrap());
        assert_eq!(tcp("localhost:5901"), "127.0.0.1:5901".parse().unwrap());
        assert_eq!(tcp("[::1]:5902"), "[::1]:5902".parse().unwrap());
        assert_eq!(tcp("127.0.0.2:1"), "127.0.0.2:1".parse().unwrap());
    }

    #[test]
    fn unix_form() {
        assert_eq!("unix:/tmp/v.sock".parse::<VncListen>(), Ok(VncListen::Unix("/tmp/v.sock".into())));
        assert!("unix:".parse::<VncListen>().is_err());
    }

    #[test]
    fn remote_needs_consent() {
        for a in ["0.0.0.0:5900", "192.168.1.2:5900", "[::]:5900"] {
            let e = a.parse::<VncListen>().unwrap_err();
            assert!(e.contains("no authentication") && e.contains("allow-remote"), "{e}");
            let ok = format!("{a},allow-remote").parse::<VncListen>().unwrap();
            assert!(matches!(ok, VncListen::Tcp { allow_remote: true, .. }));
            assert_eq!(ok.to_string(), format!("{},allow-remote", a.parse::<SocketAddr>().unwrap()));
        }
    }

    #[test]
    fn bad_forms() {
        for a in [
            "",
            "5900",
            ":x",
            ":65535",
            "host:5900",
            "127.0.0.1",
            "127.0.0.1:99999",
            ":0,bogus",
            "localhost:",
        ] {
            assert!(a.parse::<VncListen>().is_err(), "{a}");
        }
    }
}
