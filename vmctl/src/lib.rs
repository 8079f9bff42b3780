// SPDX-License-Identifier: Apache-2.0
//! The management domain: `vmctld`, a daemon that keeps VM definitions, runs each VM as a
//! detached `vmm` process, multiplexes their consoles and serves an HTTP/JSON API on a unix
//! socket; and `vmctl`, its command line.
//!
//! - [`api`]: wire types and exit codes shared by both.
//! - [`daemon`]: the daemon's VM table, lifecycle and HTTP API; [`server`] runs it.
//! - [`argv`]: a definition as the `vmm` configuration file (`api::VmConfigFile`) and the
//!   arguments that name it; [`process`]: VM processes and their control socket (typed by
//!   `api::control`); [`console`]: the console multiplexer.
//! - [`pool`]: directory storage pools and their volumes.
//! - [`net`]: managed networks: their store and the host's bridge, nftables and dnsmasq.
//! - [`hostdev`]: host PCI devices for VFIO passthrough and the host's IOMMU readiness (sysfs).
//! - [`safefs`]: file operations that symlinks cannot redirect (`openat2` beneath a pool).
//! - [`client`]: the API client; [`cli`]: the `vmctl` command line.
//!
//! See `docs/vmctl.md`.

pub mod api;
pub mod argv;
pub mod cli;
pub mod client;
pub mod console;
pub mod daemon;
pub mod hostdev;
pub mod jail;
pub mod net;
pub mod pool;
pub mod process;
pub mod safefs;
pub mod server;
