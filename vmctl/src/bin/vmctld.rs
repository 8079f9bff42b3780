// SPDX-License-Identifier: Apache-2.0
//! `vmctld`: the management daemon. See `docs/vmctl.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vmctl::daemon::policy::Settings;
use vmctl::daemon::Config;
use vmctl::server::Server;
use vmdef::validate::HostLimits;

/// Default state directory.
const DEFAULT_STATE_DIR: &str = "/var/lib/rvmm";

#[derive(Parser, Debug)]
#[command(name = "vmctld", version, about = "Management daemon: defines, runs and supervises vmm VMs")]
struct Cli {
    /// State directory: definitions, runtime state, sockets and logs.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR, env = "VMCTLD_STATE_DIR")]
    state_dir: PathBuf,
    /// Configuration file: pool roots and log limits [default: <state-dir>/vmctld.json,
    /// read if present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// API socket [default: <state-dir>/vmctld.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The vmm binary [default: the vmm next to this executable].
    #[arg(long, value_name = "PATH")]
    vmm: Option<PathBuf>,
    /// Seconds a new vmm may take to open its control socket.
    #[arg(long, value_name = "S", default_value_t = 30)]
    start_timeout: u64,
    /// An argument added to every vmm command line; repeat for more (e.g.
    /// --vmm-arg=--accept-slow-kvm).
    #[arg(long = "vmm-arg", value_name = "ARG", allow_hyphen_values = true)]
    vmm_args: Vec<String>,
    /// Log filter (tracing EnvFilter syntax), e.g. info or vmctl=debug.
    #[arg(long, value_name = "FILTER", default_value = "info", env = "VMCTLD_LOG")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let vmm = cli.vmm.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("vmm")))
            .unwrap_or_else(|| PathBuf::from("vmm"))
    });
    let host = match HostLimits::detect() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vmctld: error: cannot read the host's memory and CPUs: {e}");
            return ExitCode::from(1);
        }
    };
    let config = cli.config.clone().unwrap_or_else(|| cli.state_dir.join("vmctld.json"));
    let settings = match Settings::load(&config, &cli.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmctld: error: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = cli.socket.clone().unwrap_or_else(|| cli.state_dir.join("vmctld.sock"));
    let cfg = Config {
        state_dir: cli.state_dir.clone(),
        vmm,
        host,
        start_timeout: Duration::from_secs(cli.start_timeout),
        stop_timeout: Duration::from_secs(10),
        extra_vmm_args: cli.vmm_args.iter().map(Into::into).collect(),
        host_sysfs: PathBuf::from("/sys"),
        host_procfs: PathBuf::from("/proc"),
        settings,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vmctld: error: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let server = match Server::bind(cfg, &socket).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vmctld: error: {e}");
                return ExitCode::from(1);
            }
        };
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = i.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
            tracing::info!("stopping; VMs keep running");
        };
        match server.serve(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vmctld: error: {e}");
                ExitCode::from(1)
            }
        }
    })
}
