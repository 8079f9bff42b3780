// SPDX-License-Identifier: Apache-2.0
//! `vmctl user` and `vmctl token`: the users and API tokens of vmctld's HTTPS listener.
//! They go over the socket like every verb (admins only); the daemon owns `users.json`.

use std::io::BufRead;

use hyper::Method;

use super::output::{local_time, table};
use super::verbs::print_json;
use super::{Failure, TokenCmd, UserCmd};
use crate::api::{AccountInfo, CreatedToken, NewPassword, NewToken, NewUser};
use crate::client::Client;
use crate::daemon::accounts::{check_name, check_password};

fn name_ok(name: &str) -> Result<(), Failure> {
    check_name("name", name).map_err(|e| Failure::bad_input(e.to_string()))
}

/// The password: one line of stdin with `--password-stdin`, else typed twice at the terminal.
fn read_password(name: &str, from_stdin: bool) -> Result<String, Failure> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::bad_input(format!("cannot read the password from stdin: {e}")))?;
        let pw = line.strip_suffix('\n').unwrap_or(&line);
        return Ok(pw.strip_suffix('\r').unwrap_or(pw).to_string());
    }
    let no_tty = |e: std::io::Error| {
        Failure::bad_input(format!(
            "cannot read the password from the terminal ({e}); type it at a terminal, or send it on stdin \
             with --password-stdin"
        ))
    };
    let first = rpassword::prompt_password(format!("Password for {name}: ")).map_err(no_tty)?;
    check_password(&first).map_err(|e| Failure::bad_input(e.to_string()))?;
    let second = rpassword::prompt_password("Again: ").map_err(no_tty)?;
    if first != second {
        return Err(Failure::bad_input("password: the two entries differ; nothing was changed"));
    }
    Ok(first)
}

fn json_body<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(v).map_err(|e| Failure::error(e.to_string()))
}

fn accounts_table(list: &[AccountInfo]) -> String {
    let rows: Vec<Vec<String>> =
        list.iter().map(|a| vec![a.name.clone(), a.role.name().into(), local_time(a.created)]).collect();
    table(&["NAME", "ROLE", "CREATED"], &rows)
}

fn done(json: bool, kind: &str, name: &str, what: &str) {
    if json {
        println!("{}", serde_json::json!({ "name": name, what: true }));
    } else {
        println!("{kind} {name} {what}");
    }
}

/// Runs a `vmctl user` verb.
pub async fn user(client: &Client, cmd: &UserCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        UserCmd::List => {
            let users: Vec<AccountInfo> = client.get_json("/v1/users").await?;
            if json {
                print_json(&users);
            } else {
                print!("{}", accounts_table(&users));
            }
        }
        UserCmd::Add { name, role, password_stdin } => {
            name_ok(name)?;
            let password = read_password(name, *password_stdin)?;
            let body = json_body(&NewUser { name: name.clone(), role: *role, password })?;
            client.request(Method::POST, "/v1/users", Some("application/json"), body).await?;
            done(json, "user", name, "added");
        }
        UserCmd::Passwd { name, password_stdin } => {
            name_ok(name)?;
            let password = read_password(name, *password_stdin)?;
            let body = json_body(&NewPassword { password })?;
            let url = format!("/v1/users/{name}/password");
            client.request(Method::PUT, &url, Some("application/json"), body).await?;
            done(json, "user", name, "password changed");
        }
        UserCmd::Del { name } => {
            name_ok(name)?;
            client.request(Method::DELETE, &format!("/v1/users/{name}"), None, Vec::new()).await?;
            done(json, "user", name, "deleted");
        }
    }
    Ok(())
}

/// Runs a `vmctl token` verb.
pub async fn token(client: &Client, cmd: &TokenCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        TokenCmd::List => {
            let tokens: Vec<AccountInfo> = client.get_json("/v1/tokens").await?;
            if json {
                print_json(&tokens);
            } else {
                print!("{}", accounts_table(&tokens));
            }
        }
        TokenCmd::Add { name, role } => {
            name_ok(name)?;
            let body = json_body(&NewToken { name: name.clone(), role: *role })?;
            let (_, answer) =
                client.request(Method::POST, "/v1/tokens", Some("application/json"), body).await?;
            let t: CreatedToken = serde_json::from_slice(&answer)
                .map_err(|e| Failure::error(format!("unexpected answer: {e}")))?;
            if json {
                print_json(&t);
            } else {
                eprintln!(
                    "token {name} added with the role {}; its secret follows, shown only now: send it as \
                     `Authorization: Bearer <secret>`",
                    t.info.role.name()
                );
                println!("{}", t.secret);
            }
        }
        TokenCmd::Del { name } => {
            name_ok(name)?;
            client.request(Method::DELETE, &format!("/v1/tokens/{name}"), None, Vec::new()).await?;
            done(json, "token", name, "deleted");
        }
    }
    Ok(())
}
