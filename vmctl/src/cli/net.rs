// SPDX-License-Identifier: Apache-2.0
//! `vmctl net`: managed networks.

use hyper::Method;

use super::output::table;
use super::verbs::{content_type_for, print_json, read_definition};
use super::{Failure, NetCmd};
use crate::api::{NetDetail, NetInfo};
use crate::client::Client;
use crate::net::config::Lease;

/// Checks a name before it goes into a URL.
fn check(name: &str) -> Result<(), Failure> {
    vmdef::network::check_net_name(name).map_err(|e| Failure::bad_input(format!("network name: {e}")))
}

fn url(name: &str) -> String {
    format!("/v1/networks/{name}")
}

/// `vmctl net list`.
pub fn net_table(nets: &[NetInfo]) -> String {
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                if n.active { "active" } else { "inactive" }.into(),
                if n.autostart { "yes" } else { "no" }.into(),
                n.bridge.clone(),
                n.ipv4.clone(),
                if n.nat { "nat" } else { "route" }.into(),
                n.dhcp.clone().unwrap_or_else(|| "-".into()),
                n.used_by.join(","),
            ]
        })
        .collect();
    table(&["NAME", "STATE", "AUTOSTART", "BRIDGE", "IPV4", "MODE", "DHCP", "VMS"], &rows)
}

/// `vmctl net info`.
pub fn net_detail(d: &NetDetail) -> String {
    let n = &d.info;
    let def = &d.definition;
    let mut s = format!(
        "Name:       {}\nUUID:       {}\nState:      {}\nAutostart:  {}\nBridge:     {}\nIPv4:       {} (subnet {})\n",
        n.name,
        n.uuid,
        if n.active { "active" } else { "inactive" },
        if n.autostart { "yes" } else { "no" },
        n.bridge,
        n.ipv4,
        def.ipv4.subnet()
    );
    let mode = match (def.nat, &def.uplink) {
        (true, Some(u)) => format!("NAT out of {u}"),
        (true, None) => "NAT".into(),
        (false, _) => "routed".into(),
    };
    s.push_str(&format!("Mode:       {mode}\nDNS:        {}\n", if def.dns { "yes" } else { "no" }));
    if let Some(r) = &def.dhcp {
        s.push_str(&format!("DHCP:       {} - {} (lease {} s)\n", r.start, r.end, r.lease_secs));
    }
    for h in &def.hosts {
        s.push_str(&format!(
            "Host:       {} -> {}{}\n",
            h.mac,
            h.ip,
            h.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
        ));
    }
    for f in &def.forwards {
        let to = match (&f.guest_ip, &f.vm) {
            (Some(ip), _) => ip.to_string(),
            (None, Some(vm)) => format!("VM {vm}"),
            (None, None) => "?".into(),
        };
        s.push_str(&format!("Forward:    {} {} -> {to}:{}\n", f.proto.name(), f.host_port, f.to_port()));
    }
    if let Some(p) = n.dnsmasq_pid {
        s.push_str(&format!("dnsmasq:    pid {p}\n"));
    }
    if !n.used_by.is_empty() {
        s.push_str(&format!("VMs:        {}\n", n.used_by.join(", ")));
    }
    s
}

/// `vmctl net leases`.
pub fn lease_table(leases: &[Lease]) -> String {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.ip.clone(),
                l.mac.clone(),
                l.hostname.clone().unwrap_or_else(|| "-".into()),
                if l.expiry == 0 { "never".into() } else { l.expiry.to_string() },
            ]
        })
        .collect();
    table(&["IP", "MAC", "HOSTNAME", "EXPIRES (UNIX TIME)"], &rows)
}

/// Runs a `vmctl net` verb.
pub async fn net(client: &Client, cmd: &NetCmd, json: bool) -> Result<(), Failure> {
    let report = |n: NetInfo, what: &str| {
        if json {
            print_json(&n);
        } else {
            println!("network {} {what}", n.name);
        }
    };
    match cmd {
        NetCmd::List => {
            let nets: Vec<NetInfo> = client.get_json("/v1/networks").await?;
            if json {
                print_json(&nets);
            } else {
                print!("{}", net_table(&nets));
            }
        }
        NetCmd::Define { file } => {
            let text = read_definition(file)?;
            let ct = content_type_for(file, &text);
            let (_, body) = client.request(Method::POST, "/v1/networks", Some(ct), text.into_bytes()).await?;
            let n: NetInfo = serde_json::from_slice(&body).map_err(|e| Failure::error(e.to_string()))?;
            report(n, "defined");
        }
        NetCmd::Undefine { name } => {
            check(name)?;
            client.request(Method::DELETE, &url(name), None, Vec::new()).await?;
            if json {
                println!("{}", serde_json::json!({ "name": name, "undefined": true }));
            } else {
                println!("network {name} undefined");
            }
        }
        NetCmd::Start { name } => {
            check(name)?;
            report(client.post_json(&format!("{}/start", url(name))).await?, "started");
        }
        NetCmd::Stop { name } => {
            check(name)?;
            report(client.post_json(&format!("{}/stop", url(name))).await?, "stopped");
        }
        NetCmd::Autostart { name, disable } => {
            check(name)?;
            let body = serde_json::to_vec(&serde_json::json!({ "autostart": !disable })).unwrap_or_default();
            let (_, answer) = client
                .request(Method::POST, &format!("{}/autostart", url(name)), Some("application/json"), body)
                .await?;
            let n: NetInfo = serde_json::from_slice(&answer).map_err(|e| Failure::error(e.to_string()))?;
            report(n, if *disable { "will not be autostarted" } else { "will be autostarted" });
        }
        NetCmd::Info { name } => {
            check(name)?;
            let d: NetDetail = client.get_json(&url(name)).await?;
            if json {
                print_json(&d);
            } else {
                print!("{}", net_detail(&d));
            }
        }
        NetCmd::Dumpjson { name } => {
            check(name)?;
            let d: NetDetail = client.get_json(&url(name)).await?;
            print_json(&d.definition);
        }
        NetCmd::Dumpxml { name } => {
            check(name)?;
            let d: NetDetail = client.get_json(&url(name)).await?;
            if !d.definition.forwards.is_empty() {
                eprintln!(
                    "warning: {} port forward(s) are not in the XML (libvirt has no element for them); vmctl net dumpjson {name} shows them",
                    d.definition.forwards.len()
                );
            }
            print!("{}", vmdef::network::xml::to_xml(&d.definition));
        }
        NetCmd::Leases { name } => {
            check(name)?;
            let leases: Vec<Lease> = client.get_json(&format!("{}/leases", url(name))).await?;
            if json {
                print_json(&leases);
            } else {
                print!("{}", lease_table(&leases));
            }
        }
    }
    Ok(())
}
