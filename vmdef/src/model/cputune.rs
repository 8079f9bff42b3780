// SPDX-License-Identifier: Apache-2.0
//! CPU bandwidth limits: libvirt's `<cputune><period>` and `<quota>`.
//!
//! As in libvirt, the quota is per vCPU: within each period, each vCPU may run for at most
//! `quota_us` microseconds (50000 of 100000: half a host CPU each). JSON:
//! `"cputune": {"period_us": 100000, "quota_us": 50000}`; both optional, a negative quota
//! (`-1`) or none means no limit, no period means the kernel's default of 100000 µs.
//!
//! The kernel applies it through the cgroup v2 file `cpu.max` ("QUOTA PERIOD" or
//! "max PERIOD"): [`CpuTune::cpu_max_per_vcpu`] for a cgroup holding one vCPU thread,
//! [`crate::VmDef::cpu_max`] for one cgroup holding the whole VMM process.

use serde::{Deserialize, Deserializer, Serialize};

/// Shortest period, in µs (the kernel's and libvirt's lower bound).
pub const MIN_PERIOD_US: u64 = 1000;
/// Longest period, in µs (one second).
pub const MAX_PERIOD_US: u64 = 1_000_000;
/// The period when none is given (the kernel's default).
pub const DEFAULT_PERIOD_US: u64 = 100_000;
/// Smallest quota, in µs.
pub const MIN_QUOTA_US: u64 = 1000;
/// Largest quota, in µs: the kernel's limit for a cgroup's runtime (2^44 - 1).
pub const MAX_QUOTA_US: u64 = 17_592_186_044_415;

/// CPU bandwidth limits (libvirt `<cputune>`); the default is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuTune {
    /// Enforcement interval in µs (libvirt `<period>`), [`MIN_PERIOD_US`] to
    /// [`MAX_PERIOD_US`]; `None`: [`DEFAULT_PERIOD_US`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_us: Option<u64>,
    /// Run time each vCPU may use per period, in µs (libvirt `<quota>`), [`MIN_QUOTA_US`] to
    /// [`MAX_QUOTA_US`]; `None` (JSON: absent, `null` or negative): no limit.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "quota_or_unlimited")]
    pub quota_us: Option<u64>,
}

/// A quota as JSON gives it: a negative one (libvirt's `-1`) means no limit.
fn quota_or_unlimited<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.and_then(|q| u64::try_from(q).ok()))
}

impl CpuTune {
    /// True when nothing is set (no limit, the default period): `<cputune>` is left out.
    pub fn is_unset(&self) -> bool {
        *self == CpuTune::default()
    }

    /// The period in effect, in µs.
    pub fn period(&self) -> u64 {
        self.period_us.unwrap_or(DEFAULT_PERIOD_US)
    }

    /// The cgroup v2 `cpu.max` line for a cgroup holding one vCPU thread (libvirt's layout):
    /// `"50000 100000"`, or `"max 100000"` without a quota.
    pub fn cpu_max_per_vcpu(&self) -> String {
        match self.quota_us {
            Some(q) => format!("{q} {}", self.period()),
            None => format!("max {}", self.period()),
        }
    }

    /// The `cpu.max` line for a cgroup holding all `vcpus` vCPU threads (and the VMM's other
    /// threads): the per-vCPU quota times `vcpus`, at most [`MAX_QUOTA_US`], as libvirt does
    /// for a domain whose vCPUs it cannot place in cgroups of their own.
    pub fn cpu_max_for(&self, vcpus: u32) -> String {
        match self.quota_us {
            Some(q) => {
                let total = q.saturating_mul(u64::from(vcpus.max(1))).min(MAX_QUOTA_US);
                format!("{total} {}", self.period())
            }
            None => format!("max {}", self.period()),
        }
    }

    /// Every value out of range, as (field, message) pairs naming the range; fields are
    /// `cputune.period_us` and `cputune.quota_us`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(p) = self.period_us.filter(|p| !(MIN_PERIOD_US..=MAX_PERIOD_US).contains(p)) {
            out.push((
                "cputune.period_us",
                format!(
                    "{p} µs is out of range; use {MIN_PERIOD_US} to {MAX_PERIOD_US} µs, or leave it out \
                     for {DEFAULT_PERIOD_US}"
                ),
            ));
        }
        if let Some(q) = self.quota_us.filter(|q| !(MIN_QUOTA_US..=MAX_QUOTA_US).contains(q)) {
            out.push((
                "cputune.quota_us",
                format!(
                    "{q} µs is out of range; use {MIN_QUOTA_US} to {MAX_QUOTA_US} µs per vCPU and \
                     period, or -1 (or leave it out) for no limit"
                ),
            ));
        }
        out
    }
}

impl std::fmt::Display for CpuTune {
    /// `50000 µs per 100000 µs period per vCPU (0.50 CPU each)`, or `none` without a quota.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.quota_us {
            Some(q) => {
                let p = self.period();
                write!(f, "{q} µs per {p} µs period per vCPU ({:.2} CPU each)", q as f64 / p.max(1) as f64)
            }
            None => write!(f, "none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::VmDef;

    use super::*;

    fn json(cputune: &str) -> Result<VmDef, crate::JsonError> {
        VmDef::from_json(&format!(r#"{{"name": "t", "memory_mib": 64, "vcpus": 2 {cputune}}}"#))
    }

    #[test]
    fn json_reads_and_writes_period_and_quota() {
        let d = json(r#", "cputune": {"period_us": 100000, "quota_us": 50000}"#).unwrap();
        assert_eq!(d.cputune, CpuTune { period_us: Some(100_000), quota_us: Some(50_000) });
        let text = d.to_json().unwrap();
        assert!(text.contains("\"cputune\"") && text.contains("\"quota_us\": 50000"), "{text}");
        assert_eq!(VmDef::from_json(&text).unwrap(), d);
        // No limit: absent, null or negative; nothing is written back.
        for none in [
            "",
            r#", "cputune": {}"#,
            r#", "cputune": {"quota_us": null}"#,
            r#", "cputune": {"quota_us": -1}"#,
        ] {
            let d = json(none).unwrap_or_else(|e| panic!("{none}: {e}"));
            assert!(d.cputune.is_unset(), "{none}");
            assert!(!d.to_json().unwrap().contains("cputune"), "{none}");
        }
        let d = json(r#", "cputune": {"quota_us": 20000}"#).unwrap();
        assert_eq!(d.cputune, CpuTune { period_us: None, quota_us: Some(20_000) });
        let e = json(r#", "cputune": {"period": 100000}"#).unwrap_err();
        assert!(e.path.starts_with("cputune"), "{e}");
        let e = json(r#", "cputune": {"quota_us": "lots"}"#).unwrap_err();
        assert!(e.path.contains("quota_us"), "{e}");
    }

    #[test]
    fn cpu_max_lines_for_the_jailer() {
        let half = CpuTune { period_us: Some(100_000), quota_us: Some(50_000) };
        assert_eq!(half.cpu_max_per_vcpu(), "50000 100000");
        assert_eq!(half.cpu_max_for(1), "50000 100000");
        assert_eq!(half.cpu_max_for(4), "200000 100000");
        assert_eq!(CpuTune::default().cpu_max_per_vcpu(), "max 100000");
        assert_eq!(CpuTune { period_us: Some(20_000), quota_us: None }.cpu_max_for(8), "max 20000");
        assert_eq!(CpuTune { period_us: None, quota_us: Some(1000) }.cpu_max_for(0), "1000 100000");
        let huge = CpuTune { period_us: None, quota_us: Some(MAX_QUOTA_US) };
        assert_eq!(huge.cpu_max_for(254), format!("{MAX_QUOTA_US} 100000"));
        let mut d = json(r#", "cputune": {"period_us": 100000, "quota_us": 50000}"#).unwrap();
        assert_eq!(d.cpu_max(), "100000 100000", "two vCPUs at half a CPU each");
        d.cputune.quota_us = None;
        assert_eq!(d.cpu_max(), "max 100000");
        assert_eq!(half.to_string(), "50000 µs per 100000 µs period per vCPU (0.50 CPU each)");
        assert_eq!(CpuTune::default().to_string(), "none");
    }

    #[test]
    fn ranges_are_checked_naming_the_field() {
        assert!(CpuTune { period_us: Some(1000), quota_us: Some(MAX_QUOTA_US) }.problems().is_empty());
        assert!(CpuTune { period_us: Some(1_000_000), quota_us: Some(1000) }.problems().is_empty());
        for (tune, field, range) in [
            (CpuTune { period_us: Some(999), quota_us: None }, "cputune.period_us", "1000 to 1000000"),
            (CpuTune { period_us: Some(1_000_001), quota_us: None }, "cputune.period_us", "1000 to 1000000"),
            (CpuTune { period_us: Some(0), quota_us: None }, "cputune.period_us", "1000 to 1000000"),
            (CpuTune { period_us: None, quota_us: Some(999) }, "cputune.quota_us", "1000 to 17592186044415"),
            (CpuTune { period_us: None, quota_us: Some(0) }, "cputune.quota_us", "-1"),
            (
                CpuTune { period_us: None, quota_us: Some(MAX_QUOTA_US + 1) },
                "cputune.quota_us",
                "17592186044415",
            ),
        ] {
            let p = tune.problems();
            assert_eq!(p.len(), 1, "{tune:?}");
            assert_eq!(p[0].0, field);
            assert!(p[0].1.contains(range), "{}", p[0].1);
        }
    }
}
