// SPDX-License-Identifier: Apache-2.0
//! Tests of `<cputune>`: period and quota kept and written back, the other children warned
//! about, values out of range refused naming the range.

use super::*;

fn tuned(inner: &str) -> String {
    minimal(&format!("  <cputune>\n{inner}  </cputune>\n"), "")
}

#[test]
fn period_and_quota_are_kept_and_written_back() {
    let xml = tuned("    <period>100000</period>\n    <quota>50000</quota>\n");
    let i = import(&xml).unwrap();
    assert!(i.warnings.iter().all(|w| !w.message.contains("cputune")), "{:?}", i.warnings);
    assert_eq!(i.def.cputune, CpuTune { period_us: Some(100_000), quota_us: Some(50_000) });
    let out = to_xml(&i.def);
    assert!(
        out.contains("  <vcpu placement='static'>1</vcpu>\n  <cputune>\n    <period>100000</period>\n    <quota>50000</quota>\n  </cputune>\n"),
        "{out}"
    );
    assert_eq!(from_xml(&out).unwrap(), i.def);
    assert_eq!(i.def.cpu_max(), "50000 100000");
    // Either alone; whitespace around the numbers as libvirt allows.
    let q = from_xml(&tuned("    <quota> 20000 </quota>\n")).unwrap();
    assert_eq!(q.cputune, CpuTune { period_us: None, quota_us: Some(20_000) });
    assert!(to_xml(&q).contains("  <cputune>\n    <quota>20000</quota>\n  </cputune>\n"));
    let p = from_xml(&tuned("    <period>1000000</period>\n")).unwrap();
    assert_eq!(p.cputune, CpuTune { period_us: Some(1_000_000), quota_us: None });
    assert_eq!(p.cpu_max(), "max 1000000");
    // The JSON form carries the same.
    let json = i.def.to_json().unwrap();
    assert!(json.contains("\"period_us\": 100000") && json.contains("\"quota_us\": 50000"), "{json}");
    assert_eq!(VmDef::from_json(&json).unwrap(), i.def);
}

#[test]
fn no_limit_is_written_as_nothing() {
    for inner in [
        "    <quota>-1</quota>\n",
        "    <quota>-42</quota>\n",
        "    <quota>0</quota>\n",
        "    <period>0</period>\n    <quota>-1</quota>\n",
        "",
    ] {
        let d = from_xml(&tuned(inner)).unwrap_or_else(|e| panic!("{inner}: {e}"));
        assert!(d.cputune.is_unset(), "{inner}");
        assert!(!to_xml(&d).contains("cputune"), "{inner}");
        assert_eq!(d.cpu_max(), "max 100000");
    }
    let d = from_xml(&tuned("    <period>20000</period>\n    <quota>-1</quota>\n")).unwrap();
    assert_eq!(d.cputune, CpuTune { period_us: Some(20_000), quota_us: None });
    assert!(to_xml(&d).contains("  <cputune>\n    <period>20000</period>\n  </cputune>\n"));
}

#[test]
fn other_children_are_accepted_with_warnings() {
    let xml = tuned(
        "    <shares>2048</shares>\n    <period>100000</period>\n    <quota>50000</quota>\n    \
         <global_quota>80000</global_quota>\n    <emulator_period>100000</emulator_period>\n    \
         <emulator_quota>-1</emulator_quota>\n    <vcpupin vcpu='0' cpuset='1'/>\n    \
         <vcpupin vcpu='1' cpuset='2'/>\n    <emulatorpin cpuset='0'/>\n    \
         <vcpusched vcpus='0' scheduler='fifo' priority='1'/>\n    \
         <cachetune vcpus='0'><cache id='0' level='3' type='both' size='3' unit='MiB'/></cachetune>\n",
    );
    let i = import(&xml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(i.def.cputune, CpuTune { period_us: Some(100_000), quota_us: Some(50_000) });
    let text: Vec<String> = i.warnings.iter().map(|w| w.to_string()).collect();
    for expected in [
        "<shares>",
        "<global_quota>",
        "<emulator_period>",
        "<emulator_quota>",
        "pinning",
        "scheduler",
        "<cachetune>",
    ] {
        assert!(text.iter().any(|w| w.contains(expected)), "no warning with {expected:?}: {text:#?}");
    }
    assert_eq!(text.iter().filter(|w| w.contains("pinning")).count(), 1, "once: {text:#?}");
    assert!(text.iter().all(|w| w.starts_with("line ")), "{text:#?}");
}

#[test]
fn bad_values_are_refused_naming_the_range() {
    for (inner, shown, range) in [
        ("    <period>999</period>\n", "999", "1000 to 1000000"),
        ("    <period>1000001</period>\n", "1000001", "1000 to 1000000"),
        ("    <period>-1</period>\n", "-1", "1000 to 1000000"),
        ("    <period>1e5</period>\n", "1e5", "1000 to 1000000"),
        ("    <quota>999</quota>\n", "999", "1000 to 17592186044415"),
        ("    <quota>17592186044416</quota>\n", "17592186044416", "1000 to 17592186044415"),
        ("    <quota>99999999999999999999</quota>\n", "99999999999999999999", "or -1 for no limit"),
        ("    <quota>half</quota>\n", "half", "or -1 for no limit"),
    ] {
        let e = err_of(&tuned(inner));
        assert_eq!(e.line, 8, "{inner}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(shown) && msg.contains(range) && msg.contains("<cputune>"), "{inner}: {msg}");
        assert!(matches!(e.kind, XmlErrorKind::Value { .. }), "{inner}: {e:?}");
    }
    let e = err_of(&tuned("    <period>1000</period>\n    <period>2000</period>\n"));
    assert!(matches!(e.kind, XmlErrorKind::Duplicate { .. }), "{e}");
    let e = err_of(&tuned("    <quota unit='ms'>5000</quota>\n"));
    assert!(matches!(e.kind, XmlErrorKind::Attribute { .. }), "{e}");
    let e = err_of(&tuned("    <turbo/>\n"));
    assert!(matches!(e.kind, XmlErrorKind::Element { .. }), "{e}");
    let twice = minimal("  <cputune/>\n  <cputune/>\n", "");
    assert!(matches!(err_of(&twice).kind, XmlErrorKind::Duplicate { .. }));
}
