// SPDX-License-Identifier: Apache-2.0
//! The `--vnc` address: `HOST:PORT`, `:N` (display N: 127.0.0.1, port 5900+N, as QEMU
//! numbers displays) or `unix:PATH`, with the option `,allow-remote`.
//!
//! In the JSON configuration it is the same string.

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

#[cfg(test)]
mod tests {
    use super::*;

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
