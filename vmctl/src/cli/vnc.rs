// SPDX-License-Identifier: Apache-2.0
//! `vmctl vnc NAME`: a local TCP port for a VNC viewer, each connection forwarded through
//! the API (`GET /v1/vms/{name}/vnc`) to the VM's VNC server; and `vmctl domdisplay`.
//!
//! On a loopback address only the user who runs `vmctl vnc` (and root) may connect: the
//! owner of each connecting socket is looked up in `/proc/net/tcp{,6}` (the kernel's table
//! of TCP sockets and their uids) and others are closed at once, so a VM's screen does not
//! become every local user's. Another address accepts anyone who reaches it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::{output, Failure};
use crate::api::VmDetail;
use crate::client::Client;
use crate::daemon::lifecycle::VNC_PORT_FIRST;
use vmdef::store::RunState;

/// How often the VM's state is looked at (to end when it stops).
const STATE_POLL: Duration = Duration::from_secs(1);

/// Runs `vmctl vnc`: until Ctrl-C or the VM stops.
pub async fn forward(client: &Client, name: &str, listen: Option<SocketAddr>) -> Result<(), Failure> {
    let d: VmDetail = client.get_json(&format!("/v1/vms/{name}")).await?;
    check_running(&d)?;
    let listener = bind(listen).await?;
    let local = listener.local_addr().map_err(|e| Failure::error(format!("cannot listen: {e}")))?;
    // Written, not printed: a reader that went away (a script that read the first line)
    // must not end the forwarding.
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "vnc://{local}");
    let _ = writeln!(
        out,
        "Connect a VNC viewer to {local} (e.g. vncviewer {}::{}); Ctrl-C ends.",
        local.ip(),
        local.port()
    );
    if let Some(a) = d.info.vnc {
        let _ = writeln!(
            out,
            "{name} has a VNC password (its server also listens on {a}); the viewer asks for it."
        );
    }
    let _ = out.flush();
    if !local.ip().is_loopback() {
        eprintln!(
            "vmctl: warning: {} is not a loopback address: anyone who reaches it gets {name}'s screen and keyboard{}",
            local.ip(),
            if d.info.vnc.is_some() { " after the VNC password" } else { "" }
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    let mut poll = tokio::time::interval(STATE_POLL);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (viewer, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("vmctl: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if local.ip().is_loopback() && !allowed_peer(peer, local, me) {
                    eprintln!("vmctl: refused a connection from {peer}: it belongs to another user");
                    continue;
                }
                let (client, name) = (client.clone(), name.to_string());
                tokio::spawn(async move { join(client, &name, viewer, peer).await });
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = poll.tick() => {
                let d: VmDetail = client.get_json(&format!("/v1/vms/{name}")).await?;
                if !matches!(d.info.state, RunState::Running | RunState::Paused) {
                    eprintln!("vmctl: {name} stopped ({})", crate::api::state_name(d.info.state));
                    return Ok(());
                }
            }
        }
    }
}

/// One viewer joined to the VM's VNC server through the daemon.
async fn join(client: Client, name: &str, mut viewer: TcpStream, peer: SocketAddr) {
    let _ = viewer.set_nodelay(true);
    let mut upstream = match client.vnc(name).await {
        Ok(u) => u,
        Err(e) => {
            eprintln!("vmctl: {peer}: {e}");
            return;
        }
    };
    eprintln!("vmctl: viewer {peer} connected");
    let _ = tokio::io::copy_bidirectional(&mut viewer, &mut upstream).await;
    eprintln!("vmctl: viewer {peer} left");
}

/// A VM with a VNC server that runs, or why not.
fn check_running(d: &VmDetail) -> Result<(), Failure> {
    let name = &d.info.name;
    if d.definition.graphics.vnc.is_none() {
        return Err(Failure::bad_input(format!(
            "{name} has no VNC server; add graphics.vnc (XML: <graphics type='vnc'/>) and restart it"
        )));
    }
    if !matches!(d.info.state, RunState::Running | RunState::Paused) {
        return Err(Failure {
            code: crate::api::exit::CONFLICT,
            message: format!("{name} is not running; start it first"),
        });
    }
    Ok(())
}

/// The listener: `listen`, or 127.0.0.1 on the first free port from 5900.
async fn bind(listen: Option<SocketAddr>) -> Result<TcpListener, Failure> {
    if let Some(a) = listen {
        return TcpListener::bind(a).await.map_err(|e| {
            Failure::bad_input(format!("--listen {a}: cannot listen: {e}; choose another port"))
        });
    }
    for port in VNC_PORT_FIRST..=u16::MAX {
        match TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(Failure::error(format!("cannot listen on 127.0.0.1:{port}: {e}"))),
        }
    }
    Err(Failure::error(format!("no free port from {VNC_PORT_FIRST} on 127.0.0.1; give --listen ADDR:PORT")))
}

/// Whether the socket that connected from `peer` to `local` belongs to `me` or root.
fn allowed_peer(peer: SocketAddr, local: SocketAddr, me: u32) -> bool {
    let table = match peer {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).unwrap_or_default();
    socket_owner(&text, peer, local).is_some_and(|uid| uid == me || uid == 0)
}

/// The uid of the socket whose local address is `addr` and remote address `remote`, in
/// the text of `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn socket_owner(table: &str, addr: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let (want_local, want_remote) = (proc_addr(addr), proc_addr(remote));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (local, rem, uid) = (f.get(1)?, f.get(2)?, f.get(7)?);
        (local.eq_ignore_ascii_case(&want_local) && rem.eq_ignore_ascii_case(&want_remote))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// An address as `/proc/net/tcp*` writes it: the address as 32-bit words in host order
/// (little-endian here), each in hex, then `:PORT` in hex.
fn proc_addr(a: SocketAddr) -> String {
    let ip = match a.ip() {
        IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
        IpAddr::V6(v6) => v6
            .octets()
            .chunks_exact(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    format!("{ip}:{:04X}", a.port())
}

/// `vmctl domdisplay`: the display URI as virsh prints it (`vnc://127.0.0.1:0` for port
/// 5900); for a VM whose server listens on a unix socket, `vnc+unix://PATH`.
pub fn display_uri(d: &VmDetail) -> Result<String, String> {
    if let Some(p) = &d.info.vnc_socket {
        return Ok(format!("vnc+unix://{}", p.display()));
    }
    output::vnc_display(d).map(|a| format!("vnc://{}", output::display_name(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_owner_lookup() {
        // Two lines of a real /proc/net/tcp: a listener on 127.0.0.1:5900 and a client at
        // 127.0.0.1:41234 connected to it, owned by uid 1000.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
             0: 0100007F:170C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n   \
             1: 0100007F:A0D2 0100007F:170C 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 20 4 30 10 -1\n";
        let server: SocketAddr = "127.0.0.1:5900".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:41170".parse().unwrap();
        assert_eq!(proc_addr(server), "0100007F:170C");
        assert_eq!(socket_owner(table, client, server), Some(1000));
        assert_eq!(socket_owner(table, "127.0.0.1:1".parse().unwrap(), server), None);
        let v6: SocketAddr = "[::1]:5900".parse().unwrap();
        assert_eq!(proc_addr(v6), "00000000000000000000000001000000:170C");
    }

    /// The table of this machine: a connection this process made is this process's.
    #[test]
    fn own_loopback_connections_are_allowed() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = l.local_addr().unwrap();
        let c = std::net::TcpStream::connect(local).unwrap();
        let peer = c.local_addr().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert!(allowed_peer(peer, local, me));
        assert!(allowed_peer(peer, local, me.wrapping_add(1)) == (me == 0));
    }
}
