// SPDX-License-Identifier: Apache-2.0
//! What the control socket and signals do to a running VM: the power button, pause and
//! resume, typing on the keyboard, and screen dumps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::legacy::acpi_pm::AcpiPm;
use devices::legacy::i8042::I8042;

use crate::board::Machine;
use crate::vcpu::{self, RunState};

/// pthread ids of a boot's vCPU threads.
pub(crate) use crate::stats::VcpuThreads;

/// How long `pause` waits for every vCPU to leave the guest.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Gives the control socket this boot's power button, pause/resume and screen.
pub(crate) fn install_control_hooks(
    m: &Machine<'_>,
    pm: &Arc<Mutex<AcpiPm>>,
    keyboard: &Arc<Mutex<I8042>>,
    vga: Option<&Arc<Mutex<devices::display::vga::StdVga>>>,
    state: &Arc<RunState>,
    running: &VcpuThreads,
) {
    let (st, threads) = (state.clone(), running.clone());
    let pause: crate::control::Hook = Arc::new(move || {
        let threads = devices::bus::lock(&threads);
        st.pause(threads.len(), &|| vcpu::kick_all(&threads), PAUSE_TIMEOUT)
    });
    let st = state.clone();
    let resume: crate::control::Hook = Arc::new(move || {
        st.resume();
        Ok(())
    });
    let kbd = keyboard.clone();
    let sendkey: crate::control::SendkeyHook = Arc::new(move |text: &str| type_text(&kbd, text));
    let pm = pm.clone();
    let power_button: crate::control::Hook = Arc::new(move || {
        devices::bus::lock(&pm).press_power_button();
        Ok(())
    });
    let screendump = vga.map(|vga| {
        let vga = vga.clone();
        let hook: crate::control::ScreendumpHook = Arc::new(move |path: &std::path::Path| {
            let prefix = path.with_extension("");
            dump_screen(Some(&vga), Some(&prefix));
            Ok(())
        });
        hook
    });
    m.control.set_hooks(crate::control::ControlHooks {
        power_button: Some(power_button),
        pause: Some(pause),
        resume: Some(resume),
        screendump,
        sendkey: Some(sendkey),
    });
}

/// Types `text` on the PS/2 keyboard, one key at a time with a pause after each, so that
/// the guest (often a BIOS or boot loader polling the controller) can drain its buffer.
fn type_text(kbd: &Arc<Mutex<I8042>>, text: &str) -> Result<(), String> {
    use devices::legacy::i8042::keymap::{key_for_char, LEFT_SHIFT};
    use devices::legacy::i8042::Key;
    if let Some(c) = text.chars().find(|c| key_for_char(*c).is_none()) {
        return Err(format!("no key types {c:?} on a US keyboard"));
    }
    if text.chars().count() > 4096 {
        return Err("at most 4096 characters per request".into());
    }
    for c in text.chars() {
        let Some((key, shift)) = key_for_char(c) else { continue };
        for (k, pressed) in [(shift.then_some(Key::Plain(LEFT_SHIFT)), true), (Some(key), true)] {
            if let Some(k) = k {
                devices::bus::lock(kbd).key_event(k, pressed);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        devices::bus::lock(kbd).key_event(key, false);
        if shift {
            devices::bus::lock(kbd).key_event(Key::Plain(LEFT_SHIFT), false);
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    Ok(())
}

/// Writes the text screen to `PREFIX.txt` and the picture to `PREFIX.png`, each through a
/// temporary file and a rename so a reader never sees half a file ([`crate::files::replace`]:
/// no symlink is followed).
pub(crate) fn dump_screen(
    vga: Option<&Arc<Mutex<devices::display::vga::StdVga>>>,
    prefix: Option<&std::path::Path>,
) {
    let (Some(vga), Some(prefix)) = (vga, prefix) else {
        log::warn!("screen dump requested, but there is no VGA or no --screen-dump path");
        return;
    };
    let (text, png) = {
        let v = devices::bus::lock(vga);
        (v.text_dump().unwrap_or_else(|| "(graphics mode)\n".into()), v.screenshot_png())
    };
    let write = |ext: &str, bytes: &[u8]| {
        let path = prefix.with_extension(ext);
        if let Err(e) = crate::files::replace(&path, bytes, false) {
            log::warn!("screen dump {}: {e}", path.display());
        }
    };
    write("txt", text.as_bytes());
    match png {
        Ok(png) => write("png", &png),
        Err(e) => log::warn!("screen dump: cannot render: {e}"),
    }
}
