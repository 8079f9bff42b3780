// SPDX-License-Identifier: Apache-2.0
use std::sync::atomic::{AtomicUsize, Ordering};

use vm_memory::GuestAddress;

use super::*;
use crate::interrupt::test_util::FakeMsi;
use crate::irq::test_util::FakeIrq;
use crate::virtio::{VirtioInterruptKind, VIRTIO_F_VERSION_1};

/// Features and queue numbers of each activation.
type Activations = Arc<Mutex<Vec<(u64, Vec<u16>)>>>;

/// A device that records what the transport does to it.
struct Probe {
    sizes: Vec<u16>,
    activations: Activations,
    resets: Arc<AtomicUsize>,
    interrupt: Arc<Mutex<Option<Arc<dyn VirtioInterrupt>>>>,
}

impl VirtioDevice for Probe {
    fn debug_label(&self) -> &str {
        "probe"
    }
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX | 1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::read_config_bytes(&[1, 2, 3, 4], offset, data)
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), crate::virtio::ActivateError> {
        let idx = ctx.queues.iter().map(|q| q.index).collect();
        self.activations.lock().unwrap().push((ctx.acked_features, idx));
        *self.interrupt.lock().unwrap() = Some(ctx.interrupt);
        Ok(())
    }
    fn reset(&mut self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
    }
    fn queue_positions(&self) -> Option<Vec<crate::virtio::QueuePosition>> {
        let active = self.activations.lock().unwrap().last().map(|a| a.1.clone()).unwrap_or_default();
        Some(
            active
                .iter()
                .map(|&index| crate::virtio::QueuePosition { index, next_avail: 7, next_used: 5 })
                .collect(),
        )
    }
}

struct Rig {
    dev: VirtioPciDevice,
    msi: Arc<FakeMsi>,
    intx: Arc<FakeIrq>,
    activations: Activations,
    resets: Arc<AtomicUsize>,
    interrupt: Arc<Mutex<Option<Arc<dyn VirtioInterrupt>>>>,
}

fn rig() -> Rig {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let msi = FakeMsi::new(3);
    let intx = Arc::new(FakeIrq::default());
    let activations = Arc::new(Mutex::new(Vec::new()));
    let resets = Arc::new(AtomicUsize::new(0));
    let interrupt = Arc::new(Mutex::new(None));
    let probe = Probe {
        sizes: vec![64, 64],
        activations: activations.clone(),
        resets: resets.clone(),
        interrupt: interrupt.clone(),
    };
    let dev = VirtioPciDevice::new(Box::new(probe), mem, msi.clone(), intx.clone()).unwrap();
    Rig { dev, msi, intx, activations, resets, interrupt }
}

impl Rig {
    fn w(&mut self, offset: u64, data: &[u8]) {
        self.dev.bar_write(0, offset, data);
    }
    fn r(&mut self, offset: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.dev.bar_read(0, offset, &mut b[..len]);
        u64::from_le_bytes(b)
    }
    fn status(&mut self) -> u8 {
        self.r(0x14, 1) as u8
    }
    /// Configures queue `q` at `base` (descriptors, then avail, then used) and enables it.
    fn queue(&mut self, q: u16, base: u64) {
        self.w(0x16, &q.to_le_bytes());
        self.w(0x18, &16u16.to_le_bytes());
        self.w(0x20, &base.to_le_bytes());
        self.w(0x28, &(base + 0x100).to_le_bytes());
        self.w(0x30, &(base + 0x200).to_le_bytes());
        self.w(0x1c, &1u16.to_le_bytes());
    }
    fn negotiate(&mut self, features: u64) {
        self.w(0x14, &[status::ACKNOWLEDGE | status::DRIVER]);
        self.w(0x08, &0u32.to_le_bytes());
        self.w(0x0c, &(features as u32).to_le_bytes());
        self.w(0x08, &1u32.to_le_bytes());
        self.w(0x0c, &((features >> 32) as u32).to_le_bytes());
        self.w(0x14, &[status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK]);
    }
    fn driver_ok(&mut self) {
        self.w(0x14, &[status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK]);
    }
}

/// Walks the capability list: (offset, id, cfg_type for vendor capabilities).
fn capabilities(dev: &VirtioPciDevice) -> Vec<(usize, u8, u8)> {
    let byte = |off: usize| (dev.config_read(off / 4) >> (8 * (off % 4))) as u8;
    assert_ne!(dev.config_read(1) & (1 << 20), 0, "capability list bit");
    let mut out = Vec::new();
    let mut at = usize::from(byte(0x34));
    while at != 0 && out.len() < 16 {
        out.push((at, byte(at), byte(at + 3)));
        at = usize::from(byte(at + 1));
    }
    out
}

#[test]
fn identity_and_capabilities() {
    let r = rig();
    assert_eq!(r.dev.config_read(0), 0x1042_1af4);
    assert_eq!(r.dev.config_read(2) >> 8, 0x01_0000, "mass storage class");
    assert_eq!(r.dev.config_read(2) & 0xff, 1, "revision 1: modern only");
    assert_eq!(r.dev.config_read(11), 0x1100_1af4);
    assert_eq!((r.dev.config_read(15) >> 8) & 0xff, 1, "INTA#");
    let caps = capabilities(&r.dev);
    let vendor: Vec<u8> = caps.iter().filter(|c| c.1 == PCI_CAP_VENDOR).map(|c| c.2).collect();
    assert_eq!(vendor, [CAP_COMMON, CAP_ISR, CAP_DEVICE, CAP_NOTIFY]);
    let msix = caps.iter().find(|c| c.1 == MSIX_CAP_ID).expect("an MSI-X capability");
    let control = r.dev.config_read(msix.0 / 4) >> 16;
    assert_eq!(control & 0x7ff, 2, "three vectors: two queues and the configuration");
    // The notify capability's multiplier and every region's BAR offset.
    let notify = caps.iter().find(|c| c.2 == CAP_NOTIFY).unwrap().0;
    assert_eq!(r.dev.config_read(notify / 4 + 2), NOTIFY_OFFSET as u32);
    assert_eq!(r.dev.config_read(notify / 4 + 3), 8, "two queues, 4 bytes each");
    assert_eq!(r.dev.config_read(notify / 4 + 4), NOTIFY_MULTIPLIER);
}

#[test]
fn negotiation_activation_and_reset() {
    let mut r = rig();
    assert_eq!(r.r(0x12, 2), 2, "num_queues");
    r.queue(1, 0x1000);
    // A feature the device does not offer: FEATURES_OK does not stick.
    r.negotiate(VIRTIO_F_VERSION_1 | 2);
    assert_eq!(r.status() & status::FEATURES_OK, 0);
    r.w(0x14, &[0]);
    r.queue(1, 0x1000);
    r.negotiate(VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX);
    assert_ne!(r.status() & status::FEATURES_OK, 0);
    r.driver_ok();
    assert_eq!(*r.activations.lock().unwrap(), [(VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX, vec![1])]);
    // Frozen: the queue cannot be moved after DRIVER_OK.
    r.w(0x16, &1u16.to_le_bytes());
    r.w(0x20, &0x8000u64.to_le_bytes());
    assert_eq!(r.r(0x20, 8), 0x1000);
    // Setting DRIVER_OK again does not activate twice; a reset stops the device.
    r.driver_ok();
    assert_eq!(r.activations.lock().unwrap().len(), 1);
    r.w(0x14, &[0]);
    assert_eq!((r.resets.load(Ordering::SeqCst), r.status(), r.r(0x1c, 2)), (1, 0, 0));
}

#[test]
fn queues_outside_memory_need_a_reset() {
    let mut r = rig();
    r.queue(0, 0xf_ff00); // the used ring runs past the end of RAM
    r.negotiate(VIRTIO_F_VERSION_1);
    r.driver_ok();
    assert!(r.activations.lock().unwrap().is_empty());
    assert_ne!(r.status() & status::DEVICE_NEEDS_RESET, 0);
    r.w(0x14, &[0]);
    assert_eq!(r.status(), 0, "a reset clears the request");
    // DRIVER_OK without FEATURES_OK.
    r.queue(0, 0x1000);
    r.w(0x14, &[status::DRIVER_OK]);
    assert!(r.activations.lock().unwrap().is_empty());
    assert_ne!(r.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn notifications_kick_the_queue_eventfds() {
    let mut r = rig();
    let fds = r.dev.ioeventfds(0);
    let offsets: Vec<u64> = fds.iter().map(|f| f.0).collect();
    assert_eq!(offsets, [NOTIFY_OFFSET, NOTIFY_OFFSET + 4]);
    assert!(r.dev.ioeventfds(1).is_empty());
    r.w(NOTIFY_OFFSET + 4, &1u16.to_le_bytes());
    assert_eq!(fds[1].1.read().unwrap(), 1, "the same eventfd the ioeventfd would signal");
    assert!(fds[0].1.read().is_err(), "queue 0 not kicked");
    // Beyond the queues: ignored.
    r.w(NOTIFY_OFFSET + 0x40, &[0]);
}

#[test]
fn intx_and_isr_without_msix() {
    let mut r = rig();
    r.queue(0, 0x1000);
    r.negotiate(VIRTIO_F_VERSION_1);
    r.driver_ok();
    let irq = r.interrupt.lock().unwrap().clone().unwrap();
    irq.signal(VirtioInterruptKind::Queue(0));
    assert!(r.intx.level());
    irq.signal(VirtioInterruptKind::Config);
    assert_eq!(r.r(ISR_OFFSET, 1), 3);
    assert!(!r.intx.level(), "reading the ISR lowers INTx");
    assert_eq!(r.r(ISR_OFFSET, 1), 0);
    assert!(r.msi.take_triggered().is_empty());
}

#[test]
fn msix_vectors_per_queue_and_config() {
    let mut r = rig();
    let msix = capabilities(&r.dev).into_iter().find(|c| c.1 == MSIX_CAP_ID).unwrap().0;
    // Program the three table entries and unmask them.
    for v in 0..3u64 {
        let entry = MSIX_TABLE_OFFSET + 16 * v;
        r.w(entry, &(0xfee0_0000u32).to_le_bytes());
        r.w(entry + 8, &(0x40 + v as u32).to_le_bytes());
        r.w(entry + 12, &0u32.to_le_bytes());
    }
    r.dev.config_write(msix / 4, 2, &0x8000u16.to_le_bytes());
    r.w(0x10, &2u16.to_le_bytes()); // config vector
    r.w(0x16, &0u16.to_le_bytes());
    r.w(0x1a, &1u16.to_le_bytes()); // queue 0 -> vector 1
    assert_eq!(r.r(0x1a, 2), 1);
    r.w(0x16, &1u16.to_le_bytes());
    r.w(0x1a, &7u16.to_le_bytes()); // beyond the table: NO_VECTOR
    assert_eq!(r.r(0x1a, 2), u64::from(common_config::NO_VECTOR));
    r.queue(0, 0x1000);
    r.negotiate(VIRTIO_F_VERSION_1);
    r.driver_ok();
    let irq = r.interrupt.lock().unwrap().clone().unwrap();
    irq.signal(VirtioInterruptKind::Queue(0));
    irq.signal(VirtioInterruptKind::Config);
    irq.signal(VirtioInterruptKind::Queue(1)); // no vector: nothing
    assert_eq!(r.msi.take_triggered(), [1, 2]);
    assert!(!r.intx.level());
    assert_eq!(r.r(ISR_OFFSET, 1), 0);
    // A masked vector is held pending and delivered when unmasked.
    r.w(MSIX_TABLE_OFFSET + 16 + 12, &1u32.to_le_bytes());
    irq.signal(VirtioInterruptKind::Queue(0));
    assert!(r.msi.take_triggered().is_empty());
    assert_eq!(r.r(MSIX_PBA_OFFSET, 8), 0b10);
    r.w(MSIX_TABLE_OFFSET + 16 + 12, &0u32.to_le_bytes());
    assert_eq!(r.msi.take_triggered(), [1]);
    assert_eq!(r.r(MSIX_PBA_OFFSET, 8), 0);
    // The device asking for a reset: status bit and a configuration interrupt.
    irq.needs_reset();
    assert_ne!(r.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(r.msi.take_triggered(), [2]);
}

#[test]
fn device_config_and_odd_accesses() {
    let mut r = rig();
    assert_eq!(r.r(DEVICE_OFFSET, 4), 0x0403_0201);
    assert_eq!(r.r(DEVICE_OFFSET + 2, 4), 0x0403);
    // Other BARs, holes and the read-only regions: reads are zero, writes are ignored.
    let mut b = [0xffu8; 4];
    r.dev.bar_read(3, 0, &mut b);
    assert_eq!(b, [0; 4]);
    r.dev.bar_write(3, 0, &[1]);
    assert_eq!(r.r(0x7000, 4), 0);
    r.w(0x7000, &[1, 2, 3, 4]);
    r.w(ISR_OFFSET, &[0xff]);
    r.w(MSIX_PBA_OFFSET, &[0xff; 8]);
    assert_eq!(r.r(MSIX_PBA_OFFSET, 8), 0);
    assert_eq!(r.r(0x38, 4), 0, "past the common configuration");
}

#[test]
fn state_round_trips_and_restarts_the_device() {
    use crate::persist::{round_trip, Persist};
    let mut r = rig();
    let msix = capabilities(&r.dev).into_iter().find(|c| c.1 == MSIX_CAP_ID).unwrap().0;
    r.w(MSIX_TABLE_OFFSET, &0xfee0_0000u32.to_le_bytes());
    r.w(MSIX_TABLE_OFFSET + 8, &0x41u32.to_le_bytes());
    r.dev.config_write(msix / 4, 2, &0x8000u16.to_le_bytes());
    r.w(0x16, &1u16.to_le_bytes());
    r.w(0x1a, &0u16.to_le_bytes());
    r.queue(1, 0x1000);
    r.negotiate(VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX);
    r.driver_ok();
    let mut fresh = rig();
    let state = round_trip(&r.dev, &mut fresh.dev);
    assert!(state.active);
    assert_eq!(state.positions, [crate::virtio::QueuePosition { index: 1, next_avail: 7, next_used: 5 }]);
    // The restored function runs its device again with the negotiated features.
    assert_eq!(*fresh.activations.lock().unwrap(), [(VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX, vec![1])]);
    assert_eq!(fresh.r(0x14, 1) as u8 & status::DRIVER_OK, status::DRIVER_OK);
    assert_eq!(fresh.msi.route(0).map(|m| m.data), Some(0x41), "MSI-X routes are back");
    // A state from another device shape is refused.
    let mut other = state.clone();
    other.msix.entries.pop();
    assert!(fresh.dev.restore(&other).is_err());
    let mut other = state;
    other.common.queues.pop();
    assert!(fresh.dev.restore(&other).is_err());
}

#[test]
fn pci_reset_stops_the_device_and_clears_config_space_and_msix() {
    let mut r = rig();
    let msix = capabilities(&r.dev).into_iter().find(|c| c.1 == MSIX_CAP_ID).unwrap().0;
    r.dev.config_write(4, 0, &0xfebf_0000u32.to_le_bytes()); // BAR0
    r.dev.config_write(1, 0, &0x0006u16.to_le_bytes()); // memory decode, bus master
    r.dev.config_write(msix / 4, 2, &0x8000u16.to_le_bytes()); // MSI-X enable
    r.w(MSIX_TABLE_OFFSET + 8, &0x41u32.to_le_bytes());
    r.queue(0, 0x1000);
    r.negotiate(VIRTIO_F_VERSION_1);
    r.driver_ok();
    assert_eq!(r.activations.lock().unwrap().len(), 1);
    r.dev.reset();
    assert_eq!(r.resets.load(Ordering::SeqCst), 1, "the active device was stopped");
    assert_eq!(r.status(), 0);
    assert_eq!(r.dev.config_read(4) & 0xffff_fff0, 0, "BAR0 unassigned");
    assert_eq!(r.dev.config_read(1) & 0x7, 0, "decoding and bus mastering off");
    assert_eq!(r.dev.config_read(msix / 4) >> 16 & 0xc000, 0, "MSI-X disabled and unmasked");
    assert_eq!(r.r(MSIX_TABLE_OFFSET + 8, 4), 0, "table entries back to their reset value");
    assert_eq!(r.r(MSIX_TABLE_OFFSET + 12, 4), 1, "every vector masked");
    assert!(r.dev.bar_ranges().is_empty());
    // The driver can bring it up again, as after power-on.
    r.queue(0, 0x1000);
    r.negotiate(VIRTIO_F_VERSION_1);
    r.driver_ok();
    assert_eq!(r.activations.lock().unwrap().len(), 2);
}
