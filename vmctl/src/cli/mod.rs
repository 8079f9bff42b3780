// SPDX-License-Identifier: Apache-2.0
//! The `vmctl` command line: virsh-like verbs over the `vmctld` API.
//!
//! Exit codes ([`crate::api::exit`]): 0 ok, 1 error, 2 bad input, 3 not found (VM, pool or
//! volume), 4 conflict or wrong state (including a volume in use or a template), 5 refused
//! (the caller's user or group may not).

mod config_verbs;
mod console;
mod hostdev;
mod net;
mod output;
mod stats;
mod storage;
mod users;
mod verbs;
mod vnc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::api::exit;
use crate::client::{Client, ClientError};

/// Default state directory of the daemon.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rvmm";

/// `vmctl`.
#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "vmctl",
    version,
    about = "Manage virtual machines through vmctld",
    after_help = "Exit status: 0 ok, 1 error (daemon unreachable, host failure), 2 bad input, \
                  3 no such VM, pool, volume or network, 4 conflict or wrong state (a volume in use or a template, a network in use or not started), \
                  5 refused (only root and the group vmctl-admin may change things; the group vmctl may read, \
                  use consoles and start, shutdown, reboot, destroy, suspend and resume VMs)."
)]
pub struct Cli {
    /// The daemon's socket [default: <state-dir>/vmctld.sock].
    #[arg(long, global = true, value_name = "PATH", env = "VMCTL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The daemon's state directory, to find its socket.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_STATE_DIR, env = "VMCTLD_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Print JSON instead of tables and messages (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// The verbs.
#[derive(Subcommand, Debug, PartialEq)]
pub enum Verb {
    /// List VMs with their state.
    List,
    /// Define a VM from a file (.xml: libvirt domain XML; otherwise JSON), or replace the
    /// definition with the same name and UUID.
    Define {
        /// The definition; `-` reads JSON from stdin.
        file: PathBuf,
    },
    /// Remove a VM's definition (it must not be running).
    Undefine {
        /// VM name.
        name: String,
    },
    /// Start a VM.
    Start {
        /// VM name.
        name: String,
        /// Attach to the console once it runs.
        #[arg(long)]
        console: bool,
    },
    /// Press the power button; stop the VM if the guest has not powered off in time.
    Shutdown {
        /// VM name.
        name: String,
        /// Seconds to wait for the guest.
        #[arg(long, value_name = "S", default_value_t = 60)]
        timeout: u64,
    },
    /// Stop a VM at once.
    Destroy {
        /// VM name.
        name: String,
    },
    /// Shut the guest down gracefully and start it again.
    Reboot {
        /// VM name.
        name: String,
        /// Seconds to wait for the guest to power off.
        #[arg(long, value_name = "S", default_value_t = 60)]
        timeout: u64,
    },
    /// Hard-reset the machine.
    Reset {
        /// VM name.
        name: String,
    },
    /// Pause the vCPUs.
    Suspend {
        /// VM name.
        name: String,
    },
    /// Resume the vCPUs.
    Resume {
        /// VM name.
        name: String,
    },
    /// Attach to the serial console (Ctrl-] detaches); recent output is replayed.
    Console {
        /// VM name.
        name: String,
    },
    /// Print the definition as libvirt domain XML (without the VNC password unless
    /// --security-info).
    Dumpxml {
        /// VM name.
        name: String,
        /// Include secrets (the VNC password, passwd=); root and vmctl-admin only.
        #[arg(long)]
        security_info: bool,
    },
    /// Print the definition as JSON (without the VNC password unless --security-info).
    Dumpjson {
        /// VM name.
        name: String,
        /// Include secrets (the VNC password); root and vmctl-admin only.
        #[arg(long)]
        security_info: bool,
    },
    /// Edit the definition with $EDITOR (JSON, or XML with --xml); it is validated again.
    Edit {
        /// VM name.
        name: String,
        /// Edit the XML form.
        #[arg(long)]
        xml: bool,
    },
    /// Show a VM's state and settings (and, while it runs, its CPU time and resident memory).
    #[command(alias = "dominfo")]
    Info {
        /// VM name.
        name: String,
    },
    /// Print a VM's counters as virsh domstats does: cpu.time, vcpu.N.time, balloon.rss,
    /// block.N.rd.bytes ..., net.N.rx.bytes ... (--json: the API's answer, with the rates).
    Domstats {
        /// VM name.
        name: String,
    },
    /// Start a VM with the daemon (or not, with --disable).
    Autostart(config_verbs::AutostartArgs),
    /// List a VM's disks: target, bus, device, source.
    Domblklist {
        /// VM name.
        name: String,
    },
    /// List a VM's network interfaces: type, source, model, MAC.
    Domiflist {
        /// VM name.
        name: String,
    },
    /// Change the guest RAM of the stored definition (--config; at the next start).
    Setmem(config_verbs::SetmemArgs),
    /// Change the vCPU count of the stored definition (--config; at the next start).
    Setvcpus(config_verbs::SetvcpusArgs),
    /// Clone a shut-off VM: new name, UUID and MACs; its pool disks copied (or, with
    /// --linked, qcow2 overlays of them); CD-ROMs shared.
    Clone(config_verbs::CloneArgs),
    /// Add a disk to the stored definition (--config; at the next start).
    AttachDisk(config_verbs::AttachDiskArgs),
    /// Remove a disk from the stored definition (--config; at the next start).
    DetachDisk(config_verbs::DetachDiskArgs),
    /// Add a network interface to the stored definition (--config; at the next start).
    AttachInterface(config_verbs::AttachInterfaceArgs),
    /// Remove a network interface from the stored definition (--config; at the next start).
    DetachInterface(config_verbs::DetachInterfaceArgs),
    /// Print where a running VM's VNC server listens, as virsh does (`127.0.0.1:0` is port
    /// 5900); `--json` gives the socket address too.
    Vncdisplay {
        /// VM name.
        name: String,
    },
    /// Print a running VM's display URI, as virsh does: vnc://127.0.0.1:0 for a VNC server
    /// with a password on port 5900, vnc+unix://PATH for one on a unix socket.
    Domdisplay {
        /// VM name.
        name: String,
    },
    /// Forward a local TCP port to a running VM's VNC server (through vmctld) for a viewer;
    /// prints vnc://ADDR:PORT and runs until Ctrl-C or the VM stops. On loopback only your
    /// own (and root's) connections are accepted.
    Vnc {
        /// VM name.
        name: String,
        /// Address and port to listen on [default: 127.0.0.1, the first free port from 5900].
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Follow state changes (one line per event) until interrupted.
    Events,
    /// Storage volumes: disk images in a pool.
    Vol {
        /// What to do.
        #[command(subcommand)]
        cmd: VolCmd,
    },
    /// Storage pools: directories of volumes.
    Pool {
        /// What to do.
        #[command(subcommand)]
        cmd: PoolCmd,
    },
    /// Managed networks: a bridge with NAT, DHCP and DNS, and port forwards.
    Net {
        /// What to do.
        #[command(subcommand)]
        cmd: NetCmd,
    },
    /// Host PCI devices for VFIO passthrough (read from sysfs on this host, not the daemon).
    Hostdev {
        /// What to do.
        #[command(subcommand)]
        cmd: HostdevCmd,
    },
    /// Users of the HTTPS listener (web interface); admins only.
    User {
        /// What to do.
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// API tokens for the HTTPS listener (`Authorization: Bearer`); admins only.
    Token {
        /// What to do.
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// This host's readiness for VM features.
    Host {
        /// What to do.
        #[command(subcommand)]
        cmd: HostCmd,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// The pool option of `vmctl vol` verbs.
#[derive(clap::Args, Debug, PartialEq)]
pub struct PoolArg {
    /// The storage pool.
    #[arg(long, value_name = "POOL", default_value = crate::pool::DEFAULT_POOL)]
    pub pool: String,
}

/// `vmctl vol` verbs.
#[derive(Subcommand, Debug, PartialEq)]
pub enum VolCmd {
    /// List volumes: of one pool, or of every pool.
    List {
        /// Only this pool.
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
    },
    /// Create an empty volume.
    Create {
        /// File name in the pool, e.g. web.qcow2.
        name: String,
        /// Virtual size: bytes, or with K, M, G, T (powers of 1024), e.g. 10G.
        size: String,
        /// Image format.
        #[arg(long, value_enum, default_value_t)]
        format: crate::api::VolFormat,
        /// The pool.
        #[command(flatten)]
        pool: PoolArg,
    },
    /// Delete a volume (not while a VM uses it or it is a template, unless --force).
    Delete {
        /// Volume name.
        name: String,
        /// Delete even if a defined, stopped VM names it or clones are based on it.
        #[arg(long)]
        force: bool,
        /// The pool.
        #[command(flatten)]
        pool: PoolArg,
    },
    /// Grow a volume (never shrinks; not while a running VM uses it).
    Resize {
        /// Volume name.
        name: String,
        /// New virtual size, e.g. 20G.
        size: String,
        /// The pool.
        #[command(flatten)]
        pool: PoolArg,
    },
    /// Make a linked clone: a qcow2 overlay backed by SRC, which becomes a template.
    Clone {
        /// The template volume.
        src: String,
        /// The new volume.
        new: String,
        /// The pool.
        #[command(flatten)]
        pool: PoolArg,
    },
    /// Make a full copy of a volume (a sparse image stays sparse).
    Copy {
        /// The volume to copy.
        src: String,
        /// The new volume.
        new: String,
        /// The pool.
        #[command(flatten)]
        pool: PoolArg,
    },
    /// Print a volume's absolute path (for a definition's disk path).
    Path {
        /// Volume name.
        name: String,
        /// The pool.
        #[command(flatten)]
        pool: PoolArg,
    },
}

/// `vmctl pool` verbs.
#[derive(Subcommand, Debug, PartialEq)]
pub enum PoolCmd {
    /// List pools.
    List,
    /// Define a pool on an existing directory.
    Define {
        /// Pool name.
        name: String,
        /// The directory.
        path: PathBuf,
    },
    /// Remove a pool's definition; its directory and volumes stay.
    Undefine {
        /// Pool name.
        name: String,
    },
}

/// `vmctl net` verbs.
#[derive(Subcommand, Debug, PartialEq)]
pub enum NetCmd {
    /// List networks.
    List,
    /// Define a network from a file (.xml: libvirt network XML; otherwise JSON), or replace
    /// the stopped network with the same name and UUID.
    Define {
        /// The definition; `-` reads JSON from stdin.
        file: PathBuf,
    },
    /// Remove a stopped network's definition.
    Undefine {
        /// Network name.
        name: String,
    },
    /// Build the network on the host: bridge, address, nftables table, dnsmasq.
    Start {
        /// Network name.
        name: String,
    },
    /// Remove the network from the host (not while running VMs use it).
    Stop {
        /// Network name.
        name: String,
    },
    /// Start the network when the daemon starts (or not, with --disable).
    Autostart {
        /// Network name.
        name: String,
        /// Do not start it with the daemon.
        #[arg(long)]
        disable: bool,
    },
    /// Show a network's settings and state.
    Info {
        /// Network name.
        name: String,
    },
    /// Print the definition as JSON.
    Dumpjson {
        /// Network name.
        name: String,
    },
    /// Print the definition as libvirt `<network>` XML (port forwards are JSON only).
    Dumpxml {
        /// Network name.
        name: String,
    },
    /// List the DHCP leases dnsmasq gave out.
    Leases {
        /// Network name.
        name: String,
    },
}

impl Cli {
    /// The socket to use.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| self.state_dir.join("vmctld.sock"))
    }
}

/// Writes `bytes` to stdout; a reader that closed the pipe early (`| head`) is a normal end.
fn write_stdout(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmctl: error: cannot write to stdout: {e}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// A failed verb: the message and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// Message for stderr.
    pub message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure { code: e.exit_code(), message: e.to_string() }
    }
}

impl Failure {
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Failure { code: exit::BAD_INPUT, message: message.into() }
    }
    pub(crate) fn error(message: impl Into<String>) -> Self {
        Failure { code: exit::ERROR, message: message.into() }
    }
}

/// `vmctl user` verbs.
#[derive(Subcommand, Debug, PartialEq)]
pub enum UserCmd {
    /// List users with their roles (never their password hashes).
    List,
    /// Add a user; the password is typed twice at the terminal (or see --password-stdin).
    Add {
        /// User name: 1 to 32 of a-z, 0-9, `_`, `-`, starting with a letter or `_`.
        name: String,
        /// admin: everything; operator: read, consoles and the power operations.
        #[arg(long, value_enum)]
        role: crate::api::AccountRole,
        /// Read the password from the first line of stdin instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a user a new password; their sessions end.
    Passwd {
        /// User name.
        name: String,
        /// Read the password from the first line of stdin instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user; their sessions end.
    Del {
        /// User name.
        name: String,
    },
}

/// `vmctl token` verbs.
#[derive(Subcommand, Debug, PartialEq)]
pub enum TokenCmd {
    /// List tokens with their roles (never the secrets).
    List,
    /// Make a token and print its secret (shown this once; only a hash is kept).
    Add {
        /// Token name: 1 to 32 of a-z, 0-9, `_`, `-`, starting with a letter or `_`.
        name: String,
        /// admin: everything; operator: read, consoles and the power operations.
        #[arg(long, value_enum)]
        role: crate::api::AccountRole,
    },
    /// Delete a token: requests with it are refused from now on.
    Del {
        /// Token name.
        name: String,
    },
}

/// `vmctl hostdev` verbs.
#[derive(Subcommand, Debug, PartialEq)]
pub enum HostdevCmd {
    /// Every host PCI device with its IOMMU group, driver, and whether it can be assigned.
    List,
    /// Bind a device to vfio-pci so a VM can have it (driver_override, drivers_probe).
    Bind {
        /// PCI address, like 0000:00:02.0.
        addr: String,
    },
    /// Give a device back to its host driver.
    Unbind {
        /// PCI address, like 0000:00:02.0.
        addr: String,
    },
}

/// `vmctl host` verbs.
#[derive(Subcommand, Debug, PartialEq)]
pub enum HostCmd {
    /// Whether devices can be assigned here: IOMMU in firmware and on, groups, kernel command
    /// line, vfio modules, root; each problem with its fix.
    Check,
}

/// Parses the arguments, runs the verb and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::BAD_INPUT } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match &cli.verb {
        Verb::Completions { shell } => {
            // Generated into memory first: clap_complete panics on a failed write, and a
            // reader that stops early (`| head`) is a normal end, not an error.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "vmctl", &mut script);
            return write_stdout(&script);
        }
        Verb::Hostdev { cmd } => return hostdev::hostdev(cmd, cli.json),
        Verb::Host { cmd: HostCmd::Check } => return hostdev::host_check(cli.json),
        Verb::Man => {
            let mut page = Vec::new();
            return match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => write_stdout(&page),
                Err(e) => {
                    eprintln!("vmctl: error: {e}");
                    ExitCode::from(exit::ERROR)
                }
            };
        }
        _ => {}
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vmctl: error: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let client = Client::new(cli.socket_path());
    let result = rt.block_on(verbs::run(&client, &cli));
    // `console` can leave a read of stdin pending in tokio's blocking pool (the VM stopped
    // while nothing was typed); dropping the runtime would wait for that read forever.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if cli.json {
                eprintln!("{}", serde_json::json!({ "error": f.message, "code": f.code }));
            } else {
                eprintln!("vmctl: error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vmctl").chain(args.iter().copied()))
    }

    #[test]
    fn verbs_parse() {
        let c = parse(&["--json", "shutdown", "web", "--timeout", "5"]).unwrap();
        assert!(c.json);
        assert_eq!(c.verb, Verb::Shutdown { name: "web".into(), timeout: 5 });
        assert_eq!(
            parse(&["shutdown", "web"]).unwrap().verb,
            Verb::Shutdown { name: "web".into(), timeout: 60 }
        );
        assert_eq!(parse(&["define", "a.xml"]).unwrap().verb, Verb::Define { file: "a.xml".into() });
        assert_eq!(parse(&["edit", "a", "--xml"]).unwrap().verb, Verb::Edit { name: "a".into(), xml: true });
        assert!(parse(&["list", "--json"]).unwrap().json);
        assert!(matches!(parse(&["completions", "bash"]).unwrap().verb, Verb::Completions { .. }));
        assert_eq!(parse(&["hostdev", "list"]).unwrap().verb, Verb::Hostdev { cmd: HostdevCmd::List });
        assert_eq!(
            parse(&["hostdev", "bind", "0000:00:02.0"]).unwrap().verb,
            Verb::Hostdev { cmd: HostdevCmd::Bind { addr: "0000:00:02.0".into() } }
        );
        assert_eq!(parse(&["host", "check"]).unwrap().verb, Verb::Host { cmd: HostCmd::Check });
        let c = parse(&["domstats", "web", "--json"]).unwrap();
        assert_eq!((c.verb, c.json), (Verb::Domstats { name: "web".into() }, true));
    }

    #[test]
    fn vol_and_pool_verbs_parse() {
        let pool = |p: &str| PoolArg { pool: p.into() };
        assert_eq!(
            parse(&["vol", "create", "a.qcow2", "10G", "--format", "qcow2"]).unwrap().verb,
            Verb::Vol {
                cmd: VolCmd::Create {
                    name: "a.qcow2".into(),
                    size: "10G".into(),
                    format: crate::api::VolFormat::Qcow2,
                    pool: pool("default")
                }
            }
        );
        assert_eq!(
            parse(&["vol", "create", "a", "1M", "--pool", "fast"]).unwrap().verb,
            Verb::Vol {
                cmd: VolCmd::Create {
                    name: "a".into(),
                    size: "1M".into(),
                    format: crate::api::VolFormat::Raw,
                    pool: pool("fast")
                }
            }
        );
        assert_eq!(
            parse(&["vol", "delete", "a", "--force"]).unwrap().verb,
            Verb::Vol { cmd: VolCmd::Delete { name: "a".into(), force: true, pool: pool("default") } }
        );
        assert_eq!(parse(&["vol", "list"]).unwrap().verb, Verb::Vol { cmd: VolCmd::List { pool: None } });
        assert_eq!(
            parse(&["vol", "clone", "base", "web"]).unwrap().verb,
            Verb::Vol { cmd: VolCmd::Clone { src: "base".into(), new: "web".into(), pool: pool("default") } }
        );
        assert_eq!(
            parse(&["pool", "define", "fast", "/srv"]).unwrap().verb,
            Verb::Pool { cmd: PoolCmd::Define { name: "fast".into(), path: "/srv".into() } }
        );
        assert_eq!(
            parse(&["net", "autostart", "lan", "--disable"]).unwrap().verb,
            Verb::Net { cmd: NetCmd::Autostart { name: "lan".into(), disable: true } }
        );
        assert_eq!(
            parse(&["net", "define", "lan.xml"]).unwrap().verb,
            Verb::Net { cmd: NetCmd::Define { file: "lan.xml".into() } }
        );
        assert_eq!(
            parse(&["net", "leases", "lan"]).unwrap().verb,
            Verb::Net { cmd: NetCmd::Leases { name: "lan".into() } }
        );
        assert!(parse(&["net", "start"]).is_err());
        assert!(parse(&["vol", "create", "a", "1G", "--format", "vmdk"]).is_err());
        assert!(parse(&["vol", "resize", "a"]).is_err());
    }

    #[test]
    fn user_and_token_verbs_parse() {
        use crate::api::AccountRole;
        assert_eq!(
            parse(&["user", "add", "alice", "--role", "admin"]).unwrap().verb,
            Verb::User {
                cmd: UserCmd::Add { name: "alice".into(), role: AccountRole::Admin, password_stdin: false }
            }
        );
        assert_eq!(
            parse(&["user", "passwd", "bob", "--password-stdin"]).unwrap().verb,
            Verb::User { cmd: UserCmd::Passwd { name: "bob".into(), password_stdin: true } }
        );
        assert_eq!(
            parse(&["token", "add", "ci", "--role", "operator"]).unwrap().verb,
            Verb::Token { cmd: TokenCmd::Add { name: "ci".into(), role: AccountRole::Operator } }
        );
        assert_eq!(
            parse(&["token", "del", "ci"]).unwrap().verb,
            Verb::Token { cmd: TokenCmd::Del { name: "ci".into() } }
        );
        assert!(parse(&["user", "add", "alice"]).is_err(), "the role is required");
        assert!(parse(&["user", "add", "alice", "--role", "root"]).is_err());
    }

    #[test]
    fn socket_defaults_to_the_state_dir() {
        let c = parse(&["--state-dir", "/tmp/s", "list"]).unwrap();
        if std::env::var_os("VMCTL_SOCKET").is_none() {
            assert_eq!(c.socket_path(), PathBuf::from("/tmp/s/vmctld.sock"));
        }
        let c = parse(&["--socket", "/x.sock", "list"]).unwrap();
        assert_eq!(c.socket_path(), PathBuf::from("/x.sock"));
    }

    #[test]
    fn bad_usage_is_an_error() {
        assert!(parse(&["vol"]).is_err());
        assert!(parse(&["start"]).is_err());
        assert!(parse(&["fly", "x"]).is_err());
        assert!(parse(&["shutdown", "a", "--timeout", "soon"]).is_err());
        assert!(parse(&["completions", "cmd.exe"]).is_err());
    }

    #[test]
    fn command_is_consistent_and_has_a_man_page() {
        Cli::command().debug_assert();
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("vmctl") && text.contains("shutdown"));
        let mut comp = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut Cli::command(), "vmctl", &mut comp);
        assert!(String::from_utf8(comp).unwrap().contains("dumpxml"));
    }
}
