// SPDX-License-Identifier: Apache-2.0
//! `<cputune>` of a domain XML: `<period>` and `<quota>` are kept ([`CpuTune`]); the other
//! children libvirt defines (shares, pinning, scheduler policies, the emulator's and I/O
//! threads' bandwidth, cache and memory bandwidth) are host-side tuning that does not change
//! the guest: accepted with a warning, by the rule of [`super::import`].

use roxmltree::Node;

use super::*;
use crate::model::cputune::{
    CpuTune, DEFAULT_PERIOD_US, MAX_PERIOD_US, MAX_QUOTA_US, MIN_PERIOD_US, MIN_QUOTA_US,
};

/// `<period>`: 1000 to 1000000 µs; 0 means none (libvirt: "no value").
fn period(c: Node) -> Result<Option<u64>> {
    check_attrs(c, &[])?;
    let t = text(c)?;
    let t = t.trim();
    let expected =
        format!("{MIN_PERIOD_US} to {MAX_PERIOD_US} (microseconds; leave it out for {DEFAULT_PERIOD_US})");
    match t.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(p) if (MIN_PERIOD_US..=MAX_PERIOD_US).contains(&p) => Ok(Some(p)),
        _ => Err(value_err(c, "<cputune><period>", t, &expected)),
    }
}

/// `<quota>`: 1000 to 17592186044415 µs; negative (`-1`) or 0 means no limit, as in libvirt.
fn quota(c: Node) -> Result<Option<u64>> {
    check_attrs(c, &[])?;
    let t = text(c)?;
    let t = t.trim();
    let expected = format!("{MIN_QUOTA_US} to {MAX_QUOTA_US} (microseconds per vCPU), or -1 for no limit");
    match t.parse::<i64>() {
        Ok(q) if q <= 0 => Ok(None),
        Ok(q) => match u64::try_from(q) {
            Ok(q) if (MIN_QUOTA_US..=MAX_QUOTA_US).contains(&q) => Ok(Some(q)),
            _ => Err(value_err(c, "<cputune><quota>", t, &expected)),
        },
        Err(_) => Err(value_err(c, "<cputune><quota>", t, &expected)),
    }
}

/// `<cputune>`: the vCPUs' bandwidth limit, and warnings for the rest.
pub(super) fn cputune(node: Node, ctx: &mut Ctx) -> Result<CpuTune> {
    check_attrs(node, &[])?;
    let (mut p, mut q) = (None, None);
    for c in elements(node)? {
        match name(c) {
            "period" => once(&mut p, c, period(c)?)?,
            "quota" => once(&mut q, c, quota(c)?)?,
            "shares" => ctx.warn(c, "<cputune><shares> is ignored: the VM's CPU weight is the host's default"),
            "global_period" | "global_quota" | "emulator_period" | "emulator_quota" | "iothread_period"
            | "iothread_quota" => ctx.warn(
                c,
                format!("<cputune><{}> is ignored: only the vCPUs' <period> and <quota> are applied", name(c)),
            ),
            "vcpupin" | "emulatorpin" | "iothreadpin" => ctx.warn_once(
                "cputune-pin",
                c,
                "<cputune> pinning (<vcpupin>, <emulatorpin>, <iothreadpin>) is ignored: threads are not pinned",
            ),
            "vcpusched" | "iothreadsched" | "emulatorsched" => ctx.warn_once(
                "cputune-sched",
                c,
                "<cputune> scheduler policies (<vcpusched>...) are ignored: threads run with the host's default",
            ),
            "cachetune" | "memorytune" => {
                ctx.warn(c, format!("<cputune><{}> is ignored: cache and memory bandwidth are not partitioned", name(c)))
            }
            _ => return Err(unsupported(c)),
        }
    }
    Ok(CpuTune { period_us: p.flatten(), quota_us: q.flatten() })
}
