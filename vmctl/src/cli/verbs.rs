// SPDX-License-Identifier: Apache-2.0
//! What each `vmctl` verb does.

use std::io::Read;
use std::path::Path;

use http_body_util::BodyExt;
use hyper::Method;

use super::{config_verbs, console, output, stats, vnc, Cli, Failure, Verb};
use crate::api::{Event, VmDetail, VmInfo, VmStatsReport};
use crate::client::Client;

pub(super) fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The content type of a definition file: XML by extension (or a leading `<`), else JSON.
pub fn content_type_for(path: &Path, text: &str) -> &'static str {
    let xml_ext = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml"));
    if xml_ext || text.trim_start().starts_with('<') {
        "application/xml"
    } else {
        "application/json"
    }
}

pub(super) fn read_definition(file: &Path) -> Result<String, Failure> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::bad_input(format!("stdin: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(file)
        .map_err(|e| Failure::bad_input(format!("cannot read {}: {e}", file.display())))
}

/// The query that asks for a definition's secrets, if wanted.
fn secrets_query(wanted: bool) -> &'static str {
    if wanted {
        "?security_info=true"
    } else {
        ""
    }
}

/// Runs one verb against the daemon.
pub async fn run(client: &Client, cli: &Cli) -> Result<(), Failure> {
    let json = cli.json;
    let vm = |name: &str| format!("/v1/vms/{name}");
    let report = |info: VmInfo, what: &str| {
        if json {
            print_json(&info);
        } else {
            println!("{} {what}", info.name);
        }
    };
    match &cli.verb {
        Verb::List => {
            let vms: Vec<VmInfo> = client.get_json("/v1/vms").await?;
            if json {
                print_json(&vms);
            } else {
                print!("{}", output::vm_table(&vms));
            }
        }
        Verb::Define { file } => {
            let text = read_definition(file)?;
            let ct = content_type_for(file, &text);
            let (_, body) = client.request(Method::POST, "/v1/vms", Some(ct), text.into_bytes()).await?;
            let info: VmInfo = serde_json::from_slice(&body).map_err(|e| Failure::error(e.to_string()))?;
            if !json {
                for w in &info.warnings {
                    eprintln!("warning: {w}");
                }
            }
            report(info, "defined");
        }
        Verb::Undefine { name } => {
            client.request(Method::DELETE, &vm(name), None, Vec::new()).await?;
            if json {
                println!("{}", serde_json::json!({ "name": name, "undefined": true }));
            } else {
                println!("{name} undefined");
            }
        }
        Verb::Start { name, console: attach } => {
            let info: VmInfo = client.post_json(&format!("{}/start", vm(name))).await?;
            report(info, "started");
            if *attach {
                attach_console(client, name).await?;
            }
        }
        Verb::Shutdown { name, timeout } => {
            let info = client.post_json(&format!("{}/shutdown?timeout={timeout}", vm(name))).await?;
            report(info, "shut down");
        }
        Verb::Destroy { name } => {
            report(client.post_json(&format!("{}/destroy", vm(name))).await?, "destroyed")
        }
        Verb::Reboot { name, timeout } => {
            report(client.post_json(&format!("{}/reboot?timeout={timeout}", vm(name))).await?, "rebooted")
        }
        Verb::Reset { name } => report(client.post_json(&format!("{}/reset", vm(name))).await?, "reset"),
        Verb::Suspend { name } => {
            report(client.post_json(&format!("{}/pause", vm(name))).await?, "suspended")
        }
        Verb::Resume { name } => report(client.post_json(&format!("{}/resume", vm(name))).await?, "resumed"),
        Verb::Console { name } => attach_console(client, name).await?,
        Verb::Dumpxml { name, security_info } => {
            let path = format!("{}/xml{}", vm(name), secrets_query(*security_info));
            let (_, body) = client.request(Method::GET, &path, None, Vec::new()).await?;
            print!("{}", String::from_utf8_lossy(&body));
        }
        Verb::Dumpjson { name, security_info } => {
            let d: VmDetail =
                client.get_json(&format!("{}{}", vm(name), secrets_query(*security_info))).await?;
            print_json(&d.definition);
        }
        Verb::Info { name } => {
            let d: VmDetail = client.get_json(&vm(name)).await?;
            if json {
                print_json(&d);
            } else {
                print!("{}", output::info_block(&d));
                // A daemon without statistics, or a VMM that does not answer: no rows.
                if let Ok(r) = client.get_json::<VmStatsReport>(&format!("{}/stats", vm(name))).await {
                    for (k, v) in stats::info_rows(&r) {
                        println!("{:<11} {v}", format!("{k}:"));
                    }
                }
            }
        }
        Verb::Domstats { name } => {
            let r: VmStatsReport = client.get_json(&format!("{}/stats", vm(name))).await?;
            if json {
                print_json(&r);
            } else {
                print!("{}", stats::domstats(&r));
            }
        }
        Verb::Vncdisplay { name } => {
            let d: VmDetail = client.get_json(&vm(name)).await?;
            let addr = output::vnc_display(&d).map_err(Failure::error)?;
            if json {
                print_json(&serde_json::json!({ "address": addr.to_string(),
                    "display": output::display_number(addr) }));
            } else {
                println!("{}", output::display_name(addr));
            }
        }
        Verb::Domdisplay { name } => {
            let d: VmDetail = client.get_json(&vm(name)).await?;
            let uri = vnc::display_uri(&d).map_err(Failure::error)?;
            if json {
                print_json(&serde_json::json!({ "uri": uri }));
            } else {
                println!("{uri}");
            }
            if d.info.vnc_socket.is_some() {
                eprintln!("(a unix socket that only root can reach; for a viewer: vmctl vnc {name})");
            }
        }
        Verb::Vnc { name, listen } => vnc::forward(client, name, *listen).await?,
        Verb::Edit { name, xml } => edit(client, name, *xml).await?,
        Verb::Autostart(a) => config_verbs::autostart(client, a, json).await?,
        Verb::Domblklist { name } => config_verbs::domblklist(client, name, json).await?,
        Verb::Domiflist { name } => config_verbs::domiflist(client, name, json).await?,
        Verb::Setmem(a) => config_verbs::setmem(client, a, json).await?,
        Verb::Setvcpus(a) => config_verbs::setvcpus(client, a, json).await?,
        Verb::Clone(a) => config_verbs::clone_vm(client, a, json).await?,
        Verb::AttachDisk(a) => config_verbs::attach_disk(client, a, json).await?,
        Verb::DetachDisk(a) => config_verbs::detach_disk(client, a, json).await?,
        Verb::AttachInterface(a) => config_verbs::attach_interface(client, a, json).await?,
        Verb::DetachInterface(a) => config_verbs::detach_interface(client, a, json).await?,
        Verb::Events => follow_events(client, json).await?,
        Verb::Vol { cmd } => super::storage::vol(client, cmd, json).await?,
        Verb::Pool { cmd } => super::storage::pool(client, cmd, json).await?,
        Verb::Net { cmd } => super::net::net(client, cmd, json).await?,
        Verb::User { cmd } => super::users::user(client, cmd, json).await?,
        Verb::Token { cmd } => super::users::token(client, cmd, json).await?,
        Verb::Completions { .. } | Verb::Man | Verb::Hostdev { .. } | Verb::Host { .. } => {}
    }
    Ok(())
}

async fn attach_console(client: &Client, name: &str) -> Result<(), Failure> {
    let stream = client.console(name).await?;
    console::attach(stream, name).await.map_err(|e| Failure::error(format!("console: {e}")))?;
    Ok(())
}

/// One event as `vmctl events` prints it: local time, VM, what happened, the state after.
pub(super) fn event_line(e: &Event, detail: &str) -> String {
    let what = format!("{:?}", e.event).to_lowercase();
    format!("{} {}: {what} -> {}{detail}", output::local_time(e.time), e.vm, crate::api::state_name(e.state))
}

async fn follow_events(client: &Client, json: bool) -> Result<(), Failure> {
    let mut body = client.events().await?;
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::error(format!("events: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line);
            if json {
                print!("{text}");
            } else if let Ok(e) = serde_json::from_str::<Event>(&text) {
                let detail = e.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default();
                println!("{}", event_line(&e, &detail));
            }
        }
    }
    Ok(())
}

/// Fetches the definition, opens it in `$EDITOR` (then `$VISUAL`, then `vi`), and stores it
/// again if it changed; the daemon validates it, so an invalid edit changes nothing.
async fn edit(client: &Client, name: &str, xml: bool) -> Result<(), Failure> {
    let (text, ct, suffix) = if xml {
        // With the secrets (the VNC password), which would otherwise be lost on the way back.
        let path = format!("/v1/vms/{name}/xml?security_info=true");
        let (_, b) = client.request(Method::GET, &path, None, Vec::new()).await?;
        (String::from_utf8_lossy(&b).into_owned(), "application/xml", ".xml")
    } else {
        let d: VmDetail = client.get_json(&format!("/v1/vms/{name}?security_info=true")).await?;
        let t = d.definition.to_json().map_err(|e| Failure::error(e.to_string()))?;
        (t + "\n", "application/json", ".json")
    };
    let file = tempfile::Builder::new()
        .prefix(&format!("vmctl-{name}-"))
        .suffix(suffix)
        .tempfile()
        .map_err(|e| Failure::error(format!("temporary file: {e}")))?;
    std::fs::write(file.path(), &text).map_err(|e| Failure::error(e.to_string()))?;
    let editor = std::env::var("EDITOR").or_else(|_| std::env::var("VISUAL")).unwrap_or_else(|_| "vi".into());
    // The editor may carry arguments ("code -w"); run it through the shell like git does.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("vmctl-edit")
        .arg(file.path())
        .status()
        .map_err(|e| Failure::error(format!("cannot run {editor}: {e}")))?;
    if !status.success() {
        return Err(Failure::error(format!("{editor} failed ({status}); nothing changed")));
    }
    let edited = std::fs::read_to_string(file.path()).map_err(|e| Failure::error(e.to_string()))?;
    if edited == text {
        println!("{name}: no change");
        return Ok(());
    }
    match client.request(Method::PUT, &format!("/v1/vms/{name}"), Some(ct), edited.clone().into_bytes()).await
    {
        Ok(_) => {
            println!("{name} updated (applies at the next start)");
            Ok(())
        }
        Err(e) => {
            // Keep the user's work: the edited copy stays next to the error.
            let keep = file.into_temp_path().keep().ok();
            let mut f = Failure::from(e);
            if let Some(p) = keep {
                f.message = format!("{}\nyour edit is kept in {}", f.message, p.display());
            }
            Err(f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_type_by_extension_or_content() {
        assert_eq!(content_type_for(Path::new("a.xml"), "{}"), "application/xml");
        assert_eq!(content_type_for(Path::new("a.XML"), "{}"), "application/xml");
        assert_eq!(content_type_for(Path::new("a.json"), "{}"), "application/json");
        assert_eq!(content_type_for(Path::new("-"), "  <domain/>"), "application/xml");
        assert_eq!(content_type_for(Path::new("-"), "{\"name\":1}"), "application/json");
    }
}
