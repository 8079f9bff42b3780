// SPDX-License-Identifier: Apache-2.0
//! The KVM side of the devices' interrupt traits: MSI vectors as GSI routes with an irqfd
//! each ([`GsiRouting`]), doorbells as ioeventfds ([`KvmIoEvents`]), and level-triggered
//! inputs shared by several PCI interrupt pins ([`SharedLevelLines`]).
//!
//! KVM keeps one routing table per VM and replaces it whole on every change, so the table is
//! kept here: the routes KVM_CREATE_IRQCHIP installed (PIC and IOAPIC pins), which must be
//! repeated, plus one MSI route per routed vector.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use devices::interrupt::{
    InterruptError, InterruptManager, IoEventAddress, IoEventRegistrar, MsiMessage, MsiVectors,
};
use devices::irq::IrqLine;
use hypervisor::{IrqRoute, Vm};
use vmm_sys_util::eventfd::EventFd;

/// First GSI for MSI routes: 0-23 are the IOAPIC's pins.
const FIRST_MSI_GSI: u32 = 24;
/// KVM's limit on routing entries (KVM_MAX_IRQ_ROUTES).
const MAX_GSI: u32 = 4096;

struct Table {
    msi: BTreeMap<u32, MsiMessage>,
    next_gsi: u32,
    free: Vec<u32>,
}

impl Table {
    fn new() -> Self {
        Table { msi: BTreeMap::new(), next_gsi: FIRST_MSI_GSI, free: Vec::new() }
    }

    /// Takes `count` unused GSIs (given-back ones first), or none if there are not enough.
    fn take(&mut self, count: usize) -> Result<Vec<u32>, InterruptError> {
        let fresh = (MAX_GSI - self.next_gsi) as usize;
        if count > self.free.len() + fresh {
            return Err(InterruptError::Exhausted(count));
        }
        let reused = self.free.len().min(count);
        let mut gsis = self.free.split_off(self.free.len() - reused);
        for _ in reused..count {
            gsis.push(self.next_gsi);
            self.next_gsi += 1;
        }
        Ok(gsis)
    }
}

/// The VM's GSI routing table, shared by the manager and the vector groups it made.
struct Routing {
    vm: Arc<dyn Vm>,
    defaults: Vec<IrqRoute>,
    table: Mutex<Table>,
}

/// Hands out MSI vectors on the VM's GSI routing table.
pub struct GsiRouting(Arc<Routing>);

fn host(e: impl std::fmt::Display) -> InterruptError {
    InterruptError::Host(e.to_string())
}

impl GsiRouting {
    /// Routing for `vm`, whose in-kernel irqchip exists already.
    pub fn new(vm: Arc<dyn Vm>) -> Self {
        GsiRouting(Arc::new(Routing {
            vm,
            defaults: hypervisor::pc_default_routes(),
            table: Mutex::new(Table::new()),
        }))
    }
}

impl Routing {
    /// Installs the table in KVM (the caller holds the lock, so commits do not interleave).
    fn commit(&self, table: &Table) -> Result<(), InterruptError> {
        let mut routes = self.defaults.clone();
        routes.extend(table.msi.iter().map(|(&gsi, m)| IrqRoute::Msi {
            gsi,
            address: m.address,
            data: m.data,
        }));
        self.vm.set_gsi_routing(&routes).map_err(host)
    }

    fn update(&self, gsi: u32, msg: Option<MsiMessage>) -> Result<(), InterruptError> {
        let mut t = devices::bus::lock(&self.table);
        let changed = match msg {
            Some(m) => t.msi.insert(gsi, m) != Some(m),
            None => t.msi.remove(&gsi).is_some(),
        };
        if changed {
            self.commit(&t)?;
        }
        Ok(())
    }
}

impl InterruptManager for GsiRouting {
    /// `count` vectors, each with its own GSI and irqfd, none routed yet.
    fn msi_vectors(&self, count: usize) -> Result<Arc<dyn MsiVectors>, InterruptError> {
        let gsis = devices::bus::lock(&self.0.table).take(count)?;
        // Built up one vector at a time, so a failure part-way gives back what was taken.
        let mut group = KvmMsiVectors {
            routing: self.0.clone(),
            gsis: Vec::new(),
            fds: Vec::new(),
            masked: Mutex::new(vec![false; count]),
            held: (0..count).map(|_| AtomicBool::new(false)).collect(),
        };
        for (i, &gsi) in gsis.iter().enumerate() {
            let registered = EventFd::new(libc::EFD_NONBLOCK)
                .map_err(host)
                .and_then(|fd| self.0.vm.register_irqfd(&fd, gsi).map(|()| fd).map_err(host));
            match registered {
                Ok(fd) => {
                    group.gsis.push(gsi);
                    group.fds.push(fd);
                }
                Err(e) => {
                    devices::bus::lock(&self.0.table).free.extend(&gsis[i..]);
                    return Err(e);
                }
            }
        }
        Ok(Arc::new(group))
    }
}

/// MSI vectors on GSI routes with one irqfd each.
///
/// Masking a vector detaches its eventfd from KVM (KVM_IRQFD deassign): signals then only
/// count up in the eventfd. Unmasking reads that count and attaches the eventfd again, and if
/// it was signalled, signals it once more, which KVM delivers.
pub struct KvmMsiVectors {
    routing: Arc<Routing>,
    gsis: Vec<u32>,
    fds: Vec<EventFd>,
    /// Whether each vector's eventfd is detached now.
    masked: Mutex<Vec<bool>>,
    /// A masked vector whose eventfd count was read (by `pending`) while masked.
    held: Vec<AtomicBool>,
}

impl KvmMsiVectors {
    fn gsi(&self, vector: usize) -> Result<u32, InterruptError> {
        self.gsis.get(vector).copied().ok_or(InterruptError::NoSuchVector(vector))
    }
}

impl MsiVectors for KvmMsiVectors {
    fn len(&self) -> usize {
        self.gsis.len()
    }

    fn set_route(&self, vector: usize, msg: MsiMessage) -> Result<(), InterruptError> {
        self.routing.update(self.gsi(vector)?, Some(msg))
    }

    fn clear_route(&self, vector: usize) -> Result<(), InterruptError> {
        self.routing.update(self.gsi(vector)?, None)
    }

    fn trigger(&self, vector: usize) -> Result<(), InterruptError> {
        let fd = self.fds.get(vector).ok_or(InterruptError::NoSuchVector(vector))?;
        fd.write(1).map_err(host)
    }

    fn notifier(&self, vector: usize) -> Option<&EventFd> {
        self.fds.get(vector)
    }

    fn set_masked(&self, vector: usize, masked: bool) -> Result<(), InterruptError> {
        let gsi = self.gsi(vector)?;
        let fd = &self.fds[vector];
        let mut state = devices::bus::lock(&self.masked);
        if state[vector] == masked {
            return Ok(());
        }
        if masked {
            self.routing.vm.unregister_irqfd(fd, gsi).map_err(host)?;
            state[vector] = true;
            return Ok(());
        }
        // Signalled while detached: the count in the eventfd (read now, so that attaching
        // does not see it) or one `pending` read before.
        let signalled = fd.read().is_ok() | self.held[vector].swap(false, Ordering::SeqCst);
        self.routing.vm.register_irqfd(fd, gsi).map_err(host)?;
        state[vector] = false;
        if signalled {
            fd.write(1).map_err(host)?;
        }
        Ok(())
    }

    fn pending(&self, vector: usize) -> bool {
        let (Some(fd), Some(held)) = (self.fds.get(vector), self.held.get(vector)) else { return false };
        if !devices::bus::lock(&self.masked)[vector] {
            return false;
        }
        // The eventfd is non-blocking: a read fails (EAGAIN) when it was not signalled. A count
        // read here is remembered until the vector is unmasked.
        if !held.load(Ordering::SeqCst) && fd.read().is_ok() {
            held.store(true, Ordering::SeqCst);
        }
        held.load(Ordering::SeqCst)
    }
}

impl Drop for KvmMsiVectors {
    fn drop(&mut self) {
        let masked = std::mem::take(&mut *devices::bus::lock(&self.masked));
        for ((fd, &gsi), detached) in self.fds.iter().zip(&self.gsis).zip(masked) {
            if detached {
                continue;
            }
            if let Err(e) = self.routing.vm.unregister_irqfd(fd, gsi) {
                log::debug!("irqfd of GSI {gsi}: {e}");
            }
        }
        let mut t = devices::bus::lock(&self.routing.table);
        let mut changed = false;
        for gsi in &self.gsis {
            changed |= t.msi.remove(gsi).is_some();
            t.free.push(*gsi);
        }
        if changed {
            if let Err(e) = self.routing.commit(&t) {
                log::debug!("GSI routes: {e}");
            }
        }
    }
}

/// Doorbells as KVM ioeventfds.
pub struct KvmIoEvents(pub Arc<dyn Vm>);

fn hv_addr(addr: IoEventAddress) -> hypervisor::IoEventAddress {
    match addr {
        IoEventAddress::Pio(a) => hypervisor::IoEventAddress::Pio(a),
        IoEventAddress::Mmio(a) => hypervisor::IoEventAddress::Mmio(a),
    }
}

impl IoEventRegistrar for KvmIoEvents {
    fn register(&self, addr: IoEventAddress, fd: &EventFd) -> Result<(), InterruptError> {
        self.0.register_ioeventfd(fd, hv_addr(addr), None).map_err(host)
    }

    fn unregister(&self, addr: IoEventAddress, fd: &EventFd) -> Result<(), InterruptError> {
        self.0.unregister_ioeventfd(fd, hv_addr(addr), None).map_err(host)
    }
}

/// Level-triggered interrupt inputs shared by several sources (PCI INTx pins wired straight
/// to IOAPIC inputs on the direct machine): an input is high while any of its sources is.
/// KVM keeps one level per input for all of user space, so sources cannot drive it directly
/// without one lowering what another raised.
pub struct SharedLevelLines {
    inputs: Vec<Arc<dyn IrqLine>>,
    state: Mutex<SharedState>,
}

#[derive(Default)]
struct SharedState {
    /// The input of each source, by source number.
    input_of: Vec<usize>,
    /// The level of each source.
    high: Vec<bool>,
    /// The level driven on each input now.
    driven: Vec<bool>,
}

/// One source on a [`SharedLevelLines`] input.
struct SharedSource {
    lines: Arc<SharedLevelLines>,
    id: usize,
}

impl SharedLevelLines {
    /// Sharing of `inputs`, all low.
    pub fn new(inputs: Vec<Arc<dyn IrqLine>>) -> Arc<Self> {
        let driven = vec![false; inputs.len()];
        Arc::new(SharedLevelLines { inputs, state: Mutex::new(SharedState { driven, ..Default::default() }) })
    }

    /// A new source on input `input`, or `None` if there is no such input.
    pub fn source(self: &Arc<Self>, input: usize) -> Option<Arc<dyn IrqLine>> {
        if input >= self.inputs.len() {
            return None;
        }
        let mut s = devices::bus::lock(&self.state);
        s.input_of.push(input);
        s.high.push(false);
        Some(Arc::new(SharedSource { lines: self.clone(), id: s.input_of.len() - 1 }))
    }

    fn set(&self, id: usize, high: bool) {
        let mut guard = devices::bus::lock(&self.state);
        let s = &mut *guard;
        let (Some(&input), Some(level)) = (s.input_of.get(id), s.high.get_mut(id)) else { return };
        *level = high;
        let any = s.input_of.iter().zip(&s.high).any(|(&i, &h)| i == input && h);
        if s.driven[input] != any {
            s.driven[input] = any;
            // Under the lock, so two sources' changes reach the input in order.
            self.inputs[input].set_level(any);
        }
    }
}

impl IrqLine for SharedSource {
    fn pulse(&self) {
        self.lines.set(self.id, true);
        self.lines.set(self.id, false);
    }

    fn set_level(&self, high: bool) {
        self.lines.set(self.id, high);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Records the level and counts the changes.
    #[derive(Default)]
    struct Input {
        high: Mutex<bool>,
        changes: AtomicUsize,
    }

    impl IrqLine for Input {
        fn pulse(&self) {}
        fn set_level(&self, high: bool) {
            *self.high.lock().unwrap() = high;
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_shared_input_is_high_while_any_source_is() {
        let inputs: Vec<Arc<Input>> = (0..2).map(|_| Arc::new(Input::default())).collect();
        let lines = SharedLevelLines::new(inputs.iter().map(|i| i.clone() as Arc<dyn IrqLine>).collect());
        let (a, b, c) = (lines.source(0).unwrap(), lines.source(0).unwrap(), lines.source(1).unwrap());
        assert!(lines.source(2).is_none());
        let level = |i: usize| *inputs[i].high.lock().unwrap();
        let changes = |i: usize| inputs[i].changes.load(Ordering::SeqCst);
        a.set_level(true);
        b.set_level(true);
        assert!(level(0) && !level(1));
        assert_eq!(changes(0), 1, "already high");
        a.set_level(false);
        assert!(level(0), "b still holds it");
        b.set_level(false);
        assert!(!level(0));
        c.set_level(true);
        assert!(level(1) && !level(0));
        c.set_level(true);
        assert_eq!(changes(1), 1);
        // A pulse is a high-low pair on the input, unless another source holds it high.
        a.pulse();
        assert_eq!((level(0), changes(0)), (false, 4));
        b.set_level(true);
        a.pulse();
        assert_eq!((level(0), changes(0)), (true, 5));
    }

    #[test]
    fn direct_machine_inta_pins_land_on_distinct_inputs_for_eight_slots() {
        use arch::x86_64::acpi::{pci_intx_gsi, PCI_INTX_FIRST_GSI, PCI_INTX_GSIS};
        let inputs: Vec<u32> = (1u8..9).map(|slot| pci_intx_gsi(slot, 0) - PCI_INTX_FIRST_GSI).collect();
        assert!(inputs.iter().all(|&i| i < PCI_INTX_GSIS));
        assert_eq!(inputs.iter().collect::<std::collections::BTreeSet<_>>().len(), 8);
    }
}

#[cfg(test)]
mod gsi_tests {
    use super::*;

    #[test]
    fn gsis_are_taken_above_the_ioapic_and_given_back() {
        let mut t = Table::new();
        assert_eq!(t.take(3).unwrap(), [24, 25, 26]);
        assert_eq!(t.take(2).unwrap(), [27, 28]);
        t.free.extend([25, 24]);
        assert_eq!(t.take(3).unwrap(), [25, 24, 29], "given-back GSIs first");
        assert!(t.free.is_empty());
        assert!(matches!(t.take((MAX_GSI - 30 + 1) as usize), Err(InterruptError::Exhausted(_))));
        assert_eq!(t.next_gsi, 30, "a refused request takes nothing");
        assert_eq!(t.take((MAX_GSI - 30) as usize).unwrap().last(), Some(&(MAX_GSI - 1)));
        assert!(t.take(1).is_err());
        assert_eq!(t.take(0).unwrap(), Vec::<u32>::new());
    }

    /// With /dev/kvm: vectors get routes in KVM's table, their irqfds deliver, and dropping
    /// a group gives its GSIs back.
    #[test]
    fn msi_vectors_on_kvm() {
        use hypervisor::Hypervisor;
        let Ok(kvm) = hypervisor::kvm::KvmHypervisor::new() else {
            eprintln!("skipped: no usable /dev/kvm");
            return;
        };
        let vm: Arc<dyn Vm> = Arc::from(kvm.create_vm().unwrap());
        vm.create_pc_platform(
            arch::x86_64::layout::KVM_TSS_ADDR,
            arch::x86_64::layout::KVM_IDENTITY_MAP_ADDR,
        )
        .unwrap();
        let routing = GsiRouting::new(vm.clone());
        let a = routing.msi_vectors(3).unwrap();
        assert_eq!(a.len(), 3);
        a.set_route(0, MsiMessage { address: 0xfee0_0000, data: 0x31 }).unwrap();
        a.set_route(2, MsiMessage { address: 0xfee0_0000, data: 0x32 }).unwrap();
        assert_eq!(routing.0.table.lock().unwrap().msi.len(), 2);
        a.trigger(0).unwrap();
        assert!(a.notifier(2).is_some());
        assert!(matches!(a.trigger(3), Err(InterruptError::NoSuchVector(3))));
        // Masked: a signal of the notifier stays in the eventfd, pending; unmasking attaches
        // it again and re-signals, and KVM's irqfd consumes the count.
        let fd = a.notifier(2).unwrap();
        a.set_masked(2, true).unwrap();
        a.set_masked(2, true).unwrap();
        assert!(!a.pending(2));
        fd.write(1).unwrap();
        assert!(a.pending(2));
        assert!(a.pending(2), "a pending read is remembered");
        assert!(!a.pending(1), "unmasked vectors are never pending");
        a.set_masked(2, false).unwrap();
        assert!(!a.pending(2));
        assert!(fd.read().is_err(), "KVM took the re-signalled count");
        fd.write(1).unwrap();
        assert!(fd.read().is_err(), "attached again: KVM takes every signal");
        assert!(matches!(a.set_masked(3, true), Err(InterruptError::NoSuchVector(3))));
        a.clear_route(0).unwrap();
        assert_eq!(routing.0.table.lock().unwrap().msi.len(), 1);
        drop(a);
        let t = routing.0.table.lock().unwrap();
        assert!(t.msi.is_empty());
        assert_eq!(t.free.len(), 3);
        drop(t);
        let b = routing.msi_vectors(2).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(routing.0.table.lock().unwrap().free.len(), 1, "GSIs reused");
    }
}
