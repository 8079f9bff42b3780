// SPDX-License-Identifier: Apache-2.0
//! Statistics: every [`SAMPLE_INTERVAL`] the sampler asks each running VM's VMM for its
//! counters (`{"cmd":"stats"}` on the control socket) and records them in the VM's
//! [`history::History`] (rates over the last hour at 10 s, over the last day at 1 min).
//! `GET /v1/vms/{name}/stats` answers with the counters read at that moment and, with
//! `?history=hour|day`, the samples ([`Daemon::stats_report`]).
//!
//! Memory is bounded: two fixed rings of small samples per defined VM; the history of a VM
//! that is undefined is dropped at the next round. The rings live in memory only, so after
//! a restart of vmctld they start again (the first answer after it is a baseline).

pub mod history;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::control::{Request, Response, VmStats};
use vmdef::VmName;

use super::{Daemon, Result};
use crate::api::VmStatsReport;
use crate::process::{self, ControlError};

/// How often the sampler asks every running VM.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// How long one VMM may take to answer.
const STATS_TIMEOUT: Duration = Duration::from_secs(3);

/// The histories of every VM, by name.
#[derive(Default)]
pub struct StatsBook {
    vms: Mutex<HashMap<VmName, history::History>>,
}

impl StatsBook {
    /// The VMs that have a history.
    #[cfg(test)]
    pub(crate) fn vms_for_test(&self) -> Vec<VmName> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<VmName, history::History>> {
        self.vms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which ring `?history=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryRange {
    /// The 10-second samples of the last hour.
    Hour,
    /// The 1-minute samples of the last day.
    Day,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Asks the VMM behind `socket` for its counters.
pub async fn query(socket: &std::path::Path) -> std::result::Result<VmStats, ControlError> {
    match process::request(socket, &Request::Stats, STATS_TIMEOUT).await? {
        Response::Stats(s) => Ok(s),
        other => Err(ControlError::BadAnswer(other.to_line())),
    }
}

impl Daemon {
    /// The control sockets of the VMs that run (or are paused).
    fn running_sockets(&self) -> Vec<(VmName, PathBuf)> {
        self.table()
            .values()
            .filter(|s| s.is_active())
            .map(|s| {
                let socket =
                    s.rt.control_socket.clone().unwrap_or_else(|| self.run_paths(&s.def.name).control);
                (s.def.name.clone(), socket)
            })
            .collect()
    }

    /// One round of the sampler: asks every running VM, records the answers, and forgets
    /// the histories of VMs that are no longer defined.
    pub async fn sample_stats(&self) {
        let targets = self.running_sockets();
        let answers = futures_join(targets).await;
        let defined: Vec<VmName> = self.table().keys().cloned().collect();
        let mut book = self.stats.lock();
        book.retain(|name, _| defined.contains(name));
        for (name, time, answer) in answers {
            match answer {
                Ok(stats) => {
                    book.entry(name).or_default().record(time, stats);
                }
                Err(e) => tracing::debug!(vm = %name, "no statistics: {e}"),
            }
        }
    }

    /// Starts the sampler: a round every [`SAMPLE_INTERVAL`] while the daemon lives.
    pub fn spawn_stats_sampler(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(d) = weak.upgrade() else { return };
                d.sample_stats().await;
            }
        });
    }

    /// `GET /v1/vms/{name}/stats`: the counters now (if the VM runs) and the samples of
    /// `range`.
    pub async fn stats_report(&self, name: &VmName, range: Option<HistoryRange>) -> Result<VmStatsReport> {
        let info = self.info(name)?;
        let socket = self.running_sockets().into_iter().find(|(n, _)| n == name).map(|(_, s)| s);
        let (current, error) = match socket {
            Some(socket) => match query(&socket).await {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            },
            None => (None, None),
        };
        let mut book = self.stats.lock();
        if let Some(c) = &current {
            book.entry(name.clone()).or_default().seed(now_ms(), c);
        }
        let h = book.get(name);
        let ring = |r: HistoryRange| {
            h.map(|h| match r {
                HistoryRange::Hour => h.hour().to_vec(),
                HistoryRange::Day => h.day().to_vec(),
            })
            .unwrap_or_default()
        };
        Ok(VmStatsReport {
            name: name.to_string(),
            state: info.state,
            time: now_ms() / 1000,
            current,
            error,
            rates: h.and_then(|h| h.hour().last().copied()),
            interval: range.map(|r| match r {
                HistoryRange::Hour => SAMPLE_INTERVAL.as_secs(),
                HistoryRange::Day => 60,
            }),
            history: range.map(ring).unwrap_or_default(),
        })
    }
}

/// Asks every VMM at once (one slow VMM does not delay the others' samples); each answer
/// with the time it arrived.
async fn futures_join(
    targets: Vec<(VmName, PathBuf)>,
) -> Vec<(VmName, u64, std::result::Result<VmStats, ControlError>)> {
    let mut set = tokio::task::JoinSet::new();
    for (name, socket) in targets {
        set.spawn(async move {
            let answer = query(&socket).await;
            (name, now_ms(), answer)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(answer) = r {
            out.push(answer);
        }
    }
    out
}
