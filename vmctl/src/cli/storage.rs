// SPDX-License-Identifier: Apache-2.0
//! `vmctl vol` and `vmctl pool`.

use hyper::Method;

use super::verbs::print_json;
use super::{output, Failure, PoolCmd, VolCmd};
use crate::api::{CloneVolume, CreateVolume, PoolInfo, ResizeVolume, Size, VolumeInfo};
use crate::client::Client;
use crate::pool::PoolDef;

fn volumes_url(pool: &str) -> String {
    format!("/v1/pools/{pool}/volumes")
}

/// Checks a name before it goes into a URL: a `/` or `?` would address another resource.
fn check(what: &str, name: &str) -> Result<(), Failure> {
    crate::pool::check_name(what, name, usize::MAX).map_err(|e| Failure::bad_input(e.to_string()))
}

async fn send_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    client: &Client,
    method: Method,
    path: &str,
    body: &B,
) -> Result<T, Failure> {
    let bytes = serde_json::to_vec(body).map_err(|e| Failure::error(e.to_string()))?;
    let (_, answer) = client.request(method, path, Some("application/json"), bytes).await?;
    serde_json::from_slice(&answer).map_err(|e| Failure::error(format!("unexpected answer: {e}")))
}

fn report(v: &VolumeInfo, json: bool, what: &str) {
    if json {
        print_json(v);
    } else {
        println!("{} {what} ({} {}, {})", v.name, v.format_name(), output::bytes(v.virtual_size), v.path);
    }
}

impl VolumeInfo {
    fn format_name(&self) -> &'static str {
        block::ImageFormat::from(self.format).name()
    }
}

/// Runs a `vmctl vol` verb.
pub async fn vol(client: &Client, cmd: &VolCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        VolCmd::List { pool } => {
            let pools: Vec<String> = match pool {
                Some(p) => {
                    check("pool name", p)?;
                    vec![p.clone()]
                }
                None => {
                    let all: Vec<PoolInfo> = client.get_json("/v1/pools").await?;
                    all.into_iter().map(|p| p.name).collect()
                }
            };
            let mut vols: Vec<VolumeInfo> = Vec::new();
            for p in &pools {
                vols.extend(client.get_json::<Vec<VolumeInfo>>(&volumes_url(p)).await?);
            }
            if json {
                print_json(&vols);
            } else {
                print!("{}", output::volume_table(&vols));
            }
        }
        VolCmd::Create { name, size, format, pool } => {
            check("pool name", &pool.pool)?;
            let req = CreateVolume { name: name.clone(), size: Size::Text(size.clone()), format: *format };
            let v: VolumeInfo = send_json(client, Method::POST, &volumes_url(&pool.pool), &req).await?;
            report(&v, json, "created");
        }
        VolCmd::Delete { name, force, pool } => {
            check("pool name", &pool.pool)?;
            check("volume name", name)?;
            let q = if *force { "?force=true" } else { "" };
            let url = format!("{}/{name}{q}", volumes_url(&pool.pool));
            client.request(Method::DELETE, &url, None, Vec::new()).await?;
            if json {
                println!("{}", serde_json::json!({ "name": name, "pool": pool.pool, "deleted": true }));
            } else {
                println!("{name} deleted");
            }
        }
        VolCmd::Resize { name, size, pool } => {
            check("pool name", &pool.pool)?;
            check("volume name", name)?;
            let url = format!("{}/{name}/resize", volumes_url(&pool.pool));
            let v: VolumeInfo =
                send_json(client, Method::POST, &url, &ResizeVolume { size: Size::Text(size.clone()) })
                    .await?;
            report(&v, json, "resized");
        }
        VolCmd::Clone { src, new, pool } => {
            check("pool name", &pool.pool)?;
            check("volume name", src)?;
            let url = format!("{}/{src}/clone", volumes_url(&pool.pool));
            let v: VolumeInfo =
                send_json(client, Method::POST, &url, &CloneVolume { name: new.clone() }).await?;
            report(&v, json, &format!("created, a linked clone of {src}"));
        }
        VolCmd::Copy { src, new, pool } => {
            check("pool name", &pool.pool)?;
            check("volume name", src)?;
            let url = format!("{}/{src}/copy", volumes_url(&pool.pool));
            let v: VolumeInfo =
                send_json(client, Method::POST, &url, &CloneVolume { name: new.clone() }).await?;
            report(&v, json, &format!("created, a copy of {src}"));
        }
        VolCmd::Path { name, pool } => {
            check("pool name", &pool.pool)?;
            check("volume name", name)?;
            let v: VolumeInfo = client.get_json(&format!("{}/{name}", volumes_url(&pool.pool))).await?;
            if json {
                print_json(&v);
            } else {
                println!("{}", v.path);
            }
        }
    }
    Ok(())
}

/// Runs a `vmctl pool` verb.
pub async fn pool(client: &Client, cmd: &PoolCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        PoolCmd::List => {
            let pools: Vec<PoolInfo> = client.get_json("/v1/pools").await?;
            if json {
                print_json(&pools);
            } else {
                print!("{}", output::pool_table(&pools));
            }
        }
        PoolCmd::Define { name, path } => {
            // The daemon resolves paths itself: make a relative one absolute here, where it
            // was meant.
            let path = std::path::absolute(path)
                .map_err(|e| Failure::bad_input(format!("path: {}: {e}", path.display())))?;
            let def = PoolDef { name: name.clone(), path };
            let p: PoolInfo = send_json(client, Method::POST, "/v1/pools", &def).await?;
            if json {
                print_json(&p);
            } else {
                println!("pool {} defined ({})", p.name, p.path);
            }
        }
        PoolCmd::Undefine { name } => {
            check("pool name", name)?;
            client.request(Method::DELETE, &format!("/v1/pools/{name}"), None, Vec::new()).await?;
            if json {
                println!("{}", serde_json::json!({ "name": name, "undefined": true }));
            } else {
                println!("pool {name} undefined (its files stay)");
            }
        }
    }
    Ok(())
}
