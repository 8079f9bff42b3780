// SPDX-License-Identifier: Apache-2.0
//! The virtio-pci common configuration structure (virtio 1.2, 4.1.4.3): feature negotiation,
//! device status and the configuration of each queue.
//!
//! Any access width works: a write is laid over the structure's current bytes and each field
//! it touches is applied with its new value, so a driver writing a 64-bit queue address as
//! two 32-bit halves (or one 64-bit access) gets the same result. Queue configuration is
//! frozen once the driver sets DRIVER_OK: later writes are ignored, so what the transport
//! validated at activation is what the device uses.

use std::sync::atomic::{AtomicU16, Ordering};

use virtio_queue::{Queue, QueueState, QueueT};

use super::super::status;

/// Size of the structure in bytes.
pub const COMMON_CONFIG_LEN: u64 = 0x38;
/// "No MSI-X vector" (virtio 1.2, 4.1.5.1.2).
pub const NO_VECTOR: u16 = 0xffff;

/// The fields, by byte offset and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    DeviceFeatureSelect,
    DeviceFeature,
    DriverFeatureSelect,
    DriverFeature,
    MsixConfig,
    NumQueues,
    DeviceStatus,
    ConfigGeneration,
    QueueSelect,
    QueueSize,
    QueueMsixVector,
    QueueEnable,
    QueueNotifyOff,
    QueueDescLo,
    QueueDescHi,
    QueueDriverLo,
    QueueDriverHi,
    QueueDeviceLo,
    QueueDeviceHi,
}

const FIELDS: [(u64, u64, Field); 19] = [
    (0x00, 4, Field::DeviceFeatureSelect),
    (0x04, 4, Field::DeviceFeature),
    (0x08, 4, Field::DriverFeatureSelect),
    (0x0c, 4, Field::DriverFeature),
    (0x10, 2, Field::MsixConfig),
    (0x12, 2, Field::NumQueues),
    (0x14, 1, Field::DeviceStatus),
    (0x15, 1, Field::ConfigGeneration),
    (0x16, 2, Field::QueueSelect),
    (0x18, 2, Field::QueueSize),
    (0x1a, 2, Field::QueueMsixVector),
    (0x1c, 2, Field::QueueEnable),
    (0x1e, 2, Field::QueueNotifyOff),
    (0x20, 4, Field::QueueDescLo),
    (0x24, 4, Field::QueueDescHi),
    (0x28, 4, Field::QueueDriverLo),
    (0x2c, 4, Field::QueueDriverHi),
    (0x30, 4, Field::QueueDeviceLo),
    (0x34, 4, Field::QueueDeviceHi),
];

/// MSI-X vectors chosen by the driver, shared with the interrupt path (read on every
/// notification, from the device's worker threads).
#[derive(Debug)]
pub struct Vectors {
    /// The configuration-change vector.
    pub config: AtomicU16,
    /// One vector per queue.
    pub queues: Vec<AtomicU16>,
}

impl Vectors {
    /// `queues` queue vectors, all unassigned.
    pub fn new(queues: usize) -> Self {
        Vectors {
            config: AtomicU16::new(NO_VECTOR),
            queues: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
        }
    }

    /// Back to unassigned.
    pub fn reset(&self) {
        self.config.store(NO_VECTOR, Ordering::SeqCst);
        for q in &self.queues {
            q.store(NO_VECTOR, Ordering::SeqCst);
        }
    }
}

/// The common configuration of one device.
#[derive(Debug)]
pub struct CommonConfig {
    device_features: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    /// Features the driver wrote.
    pub driver_features: u64,
    /// Device status (without the transport's DEVICE_NEEDS_RESET).
    pub status: u8,
    config_generation: u8,
    queue_select: u16,
    /// The queues as the driver configures them.
    pub queues: Vec<Queue>,
    /// Number of MSI-X table entries (vectors at or beyond it are refused).
    msix_count: u16,
}

impl CommonConfig {
    /// A device offering `features` with queues of the given largest sizes and `msix_count`
    /// MSI-X vectors.
    pub fn new(features: u64, queue_max_sizes: &[u16], msix_count: u16) -> Self {
        let queues = queue_max_sizes
            .iter()
            .map(|&max| {
                Queue::new(max).unwrap_or_else(|_| Queue::new(256).expect("256 is a valid queue size"))
            })
            .collect();
        CommonConfig {
            device_features: features,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            queue_select: 0,
            queues,
            msix_count,
        }
    }

    /// Back to the state after power-on (a device reset).
    pub fn reset(&mut self) {
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        for q in &mut self.queues {
            q.reset();
        }
    }

    /// Counts a change of the device configuration (drivers re-read it when this moves).
    pub fn bump_generation(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
    }

    fn frozen(&self) -> bool {
        self.status & status::DRIVER_OK != 0
    }

    fn selected(&self) -> Option<&Queue> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn field_value(&self, field: Field, vectors: &Vectors, status_extra: u8) -> u32 {
        let q = self.selected();
        let qv = |f: &dyn Fn(&Queue) -> u32| q.map_or(0, f);
        let lo = |a: u64| a as u32;
        let hi = |a: u64| (a >> 32) as u32;
        match field {
            Field::DeviceFeatureSelect => self.device_feature_select,
            Field::DeviceFeature => match self.device_feature_select {
                0 => lo(self.device_features),
                1 => hi(self.device_features),
                _ => 0,
            },
            Field::DriverFeatureSelect => self.driver_feature_select,
            Field::DriverFeature => match self.driver_feature_select {
                0 => lo(self.driver_features),
                1 => hi(self.driver_features),
                _ => 0,
            },
            Field::MsixConfig => u32::from(vectors.config.load(Ordering::SeqCst)),
            Field::NumQueues => self.queues.len() as u32,
            Field::DeviceStatus => u32::from(self.status | status_extra),
            Field::ConfigGeneration => u32::from(self.config_generation),
            Field::QueueSelect => u32::from(self.queue_select),
            Field::QueueSize => qv(&|q| u32::from(q.size())),
            Field::QueueMsixVector => vectors
                .queues
                .get(usize::from(self.queue_select))
                .map_or(u32::from(NO_VECTOR), |v| u32::from(v.load(Ordering::SeqCst))),
            Field::QueueEnable => qv(&|q| u32::from(q.ready())),
            // One doorbell per queue: the queue's number times the notify multiplier.
            Field::QueueNotifyOff => q.map_or(0, |_| u32::from(self.queue_select)),
            Field::QueueDescLo => qv(&|q| lo(q.desc_table())),
            Field::QueueDescHi => qv(&|q| hi(q.desc_table())),
            Field::QueueDriverLo => qv(&|q| lo(q.avail_ring())),
            Field::QueueDriverHi => qv(&|q| hi(q.avail_ring())),
            Field::QueueDeviceLo => qv(&|q| lo(q.used_ring())),
            Field::QueueDeviceHi => qv(&|q| hi(q.used_ring())),
        }
    }

    fn bytes(&self, vectors: &Vectors, status_extra: u8) -> [u8; COMMON_CONFIG_LEN as usize] {
        let mut out = [0u8; COMMON_CONFIG_LEN as usize];
        for (offset, len, field) in FIELDS {
            let v = self.field_value(field, vectors, status_extra).to_le_bytes();
            let (o, l) = (offset as usize, len as usize);
            out[o..o + l].copy_from_slice(&v[..l]);
        }
        out
    }

    /// A guest read at `offset`; `status_extra` is OR-ed into the status (DEVICE_NEEDS_RESET).
    pub fn read(&self, offset: u64, data: &mut [u8], vectors: &Vectors, status_extra: u8) {
        super::super::read_config_bytes(&self.bytes(vectors, status_extra), offset, data);
    }

    /// A guest write at `offset`. Returns the new device status when the write touched it;
    /// the transport acts on status changes (negotiation, activation, reset).
    pub fn write(&mut self, offset: u64, data: &[u8], vectors: &Vectors) -> Option<u8> {
        let end = offset.checked_add(data.len() as u64).filter(|&e| e <= COMMON_CONFIG_LEN)?;
        let mut bytes = self.bytes(vectors, 0);
        bytes[offset as usize..end as usize].copy_from_slice(data);
        let mut new_status = None;
        for (f_off, f_len, field) in FIELDS {
            if f_off + f_len <= offset || f_off >= end {
                continue;
            }
            let mut v = [0u8; 4];
            v[..f_len as usize].copy_from_slice(&bytes[f_off as usize..(f_off + f_len) as usize]);
            let value = u32::from_le_bytes(v);
            if field == Field::DeviceStatus {
                new_status = Some(value as u8);
            } else {
                self.apply(field, value, vectors);
            }
        }
        new_status
    }

    fn apply(&mut self, field: Field, value: u32, vectors: &Vectors) {
        let frozen = self.frozen();
        let negotiated = self.status & status::FEATURES_OK != 0;
        let vector = |v: u32| if v < u32::from(self.msix_count) { v as u16 } else { NO_VECTOR };
        let sel = usize::from(self.queue_select);
        let queue = if frozen { None } else { self.queues.get_mut(sel) };
        match field {
            Field::DeviceFeatureSelect => self.device_feature_select = value,
            Field::DriverFeatureSelect => self.driver_feature_select = value,
            Field::DriverFeature if !negotiated => match self.driver_feature_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32),
                _ => {}
            },
            Field::MsixConfig => vectors.config.store(vector(value), Ordering::SeqCst),
            Field::QueueSelect => self.queue_select = value as u16,
            Field::QueueMsixVector => {
                if let Some(v) = vectors.queues.get(sel) {
                    v.store(vector(value), Ordering::SeqCst);
                }
            }
            _ => {
                if let Some(q) = queue {
                    apply_queue(q, field, value);
                }
            }
        }
    }

    /// The state for a snapshot (queue positions are the device's; see `QueuePosition`).
    pub fn save(&self, vectors: &Vectors) -> CommonConfigState {
        CommonConfigState {
            device_feature_select: self.device_feature_select,
            driver_feature_select: self.driver_feature_select,
            driver_features: self.driver_features,
            status: self.status,
            config_generation: self.config_generation,
            queue_select: self.queue_select,
            queues: self
                .queues
                .iter()
                .map(|q| QueueConfigState {
                    size: q.size(),
                    ready: q.ready(),
                    desc_table: q.desc_table(),
                    avail_ring: q.avail_ring(),
                    used_ring: q.used_ring(),
                })
                .collect(),
            config_vector: vectors.config.load(Ordering::SeqCst),
            queue_vectors: vectors.queues.iter().map(|v| v.load(Ordering::SeqCst)).collect(),
        }
    }

    /// Takes a saved state; an error (and nothing changed) if it does not fit this device.
    pub fn restore(&mut self, s: &CommonConfigState, vectors: &Vectors) -> Result<(), String> {
        if s.queues.len() != self.queues.len() || s.queue_vectors.len() != vectors.queues.len() {
            return Err(format!("{} queues saved, the device has {}", s.queues.len(), self.queues.len()));
        }
        let mut queues = Vec::with_capacity(s.queues.len());
        for (i, (q, saved)) in self.queues.iter().zip(&s.queues).enumerate() {
            let state = QueueState {
                max_size: q.max_size(),
                size: saved.size,
                ready: saved.ready,
                desc_table: saved.desc_table,
                avail_ring: saved.avail_ring,
                used_ring: saved.used_ring,
                ..Default::default()
            };
            queues.push(Queue::try_from(state).map_err(|e| format!("queue {i}: {e}"))?);
        }
        self.queues = queues;
        self.device_feature_select = s.device_feature_select;
        self.driver_feature_select = s.driver_feature_select;
        self.driver_features = s.driver_features;
        self.status = s.status;
        self.config_generation = s.config_generation;
        self.queue_select = s.queue_select;
        let vector = |v: u16| if v < self.msix_count { v } else { NO_VECTOR };
        vectors.config.store(vector(s.config_vector), Ordering::SeqCst);
        for (v, saved) in vectors.queues.iter().zip(&s.queue_vectors) {
            v.store(vector(*saved), Ordering::SeqCst);
        }
        Ok(())
    }

    /// Whether the driver accepted only features the device offered, including VERSION_1.
    pub fn features_acceptable(&self) -> bool {
        self.driver_features & !self.device_features == 0
            && self.driver_features & super::super::VIRTIO_F_VERSION_1 != 0
    }
}

/// Applies a queue field write (only while the queue is not enabled: the driver configures
/// a queue, then enables it).
fn apply_queue(q: &mut Queue, field: Field, value: u32) {
    if q.ready() && field != Field::QueueEnable {
        log::debug!("virtio: write to an enabled queue's configuration ignored");
        return;
    }
    match field {
        Field::QueueSize if q.try_set_size(value as u16).is_err() => {
            log::debug!("virtio: queue size {value} refused");
        }
        // The driver enables a queue with 1; writing 0 is not allowed and ignored.
        Field::QueueEnable if value == 1 => q.set_ready(true),
        Field::QueueDescLo => q.set_desc_table_address(Some(value), None),
        Field::QueueDescHi => q.set_desc_table_address(None, Some(value)),
        Field::QueueDriverLo => q.set_avail_ring_address(Some(value), None),
        Field::QueueDriverHi => q.set_avail_ring_address(None, Some(value)),
        Field::QueueDeviceLo => q.set_used_ring_address(Some(value), None),
        Field::QueueDeviceHi => q.set_used_ring_address(None, Some(value)),
        _ => {}
    }
}

/// A queue's configuration as the driver set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueConfigState {
    /// Size the driver chose.
    pub size: u16,
    /// Enabled.
    pub ready: bool,
    /// Descriptor table address.
    pub desc_table: u64,
    /// Available (driver) ring address.
    pub avail_ring: u64,
    /// Used (device) ring address.
    pub used_ring: u64,
}

/// The common configuration's state, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommonConfigState {
    /// Device feature word selector.
    pub device_feature_select: u32,
    /// Driver feature word selector.
    pub driver_feature_select: u32,
    /// Features the driver wrote.
    pub driver_features: u64,
    /// Device status.
    pub status: u8,
    /// Configuration generation.
    pub config_generation: u8,
    /// Queue selector.
    pub queue_select: u16,
    /// Each queue's configuration.
    pub queues: Vec<QueueConfigState>,
    /// Configuration-change MSI-X vector.
    pub config_vector: u16,
    /// Each queue's MSI-X vector.
    pub queue_vectors: Vec<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::VIRTIO_F_VERSION_1;

    fn cfg() -> (CommonConfig, Vectors) {
        (CommonConfig::new(VIRTIO_F_VERSION_1 | 0b101, &[128, 64], 3), Vectors::new(2))
    }
    fn r32(c: &CommonConfig, v: &Vectors, off: u64) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b, v, 0);
        u32::from_le_bytes(b)
    }
    fn r16(c: &CommonConfig, v: &Vectors, off: u64) -> u16 {
        let mut b = [0u8; 2];
        c.read(off, &mut b, v, 0);
        u16::from_le_bytes(b)
    }
    fn w32(c: &mut CommonConfig, v: &Vectors, off: u64, val: u32) -> Option<u8> {
        c.write(off, &val.to_le_bytes(), v)
    }
    fn w16(c: &mut CommonConfig, v: &Vectors, off: u64, val: u16) -> Option<u8> {
        c.write(off, &val.to_le_bytes(), v)
    }

    #[test]
    fn feature_words_by_select() {
        let (mut c, v) = cfg();
        assert_eq!(r32(&c, &v, 0x04), 0b101);
        w32(&mut c, &v, 0x00, 1);
        assert_eq!(r32(&c, &v, 0x04), 1);
        w32(&mut c, &v, 0x00, 7);
        assert_eq!(r32(&c, &v, 0x04), 0);
        w32(&mut c, &v, 0x0c, 0b100);
        w32(&mut c, &v, 0x08, 1);
        w32(&mut c, &v, 0x0c, 1);
        assert_eq!(c.driver_features, VIRTIO_F_VERSION_1 | 0b100);
        assert!(c.features_acceptable());
        w32(&mut c, &v, 0x08, 0);
        w32(&mut c, &v, 0x0c, 0b110);
        assert!(!c.features_acceptable(), "bit 1 was not offered");
        // After FEATURES_OK the driver's features are fixed.
        c.status = status::FEATURES_OK;
        w32(&mut c, &v, 0x0c, 0);
        assert_eq!(c.driver_features & 0xffff_ffff, 0b110);
        // Device features are read-only.
        w32(&mut c, &v, 0x00, 0);
        w32(&mut c, &v, 0x04, 0);
        assert_eq!(r32(&c, &v, 0x04), 0b101);
    }

    #[test]
    fn status_writes_are_reported_and_read_back_with_extra_bits() {
        let (mut c, v) = cfg();
        assert_eq!(c.write(0x14, &[3], &v), Some(3));
        assert_eq!(c.write(0x10, &[1, 0], &v), None);
        c.status = 3;
        let mut b = [0u8];
        c.read(0x14, &mut b, &v, status::DEVICE_NEEDS_RESET);
        assert_eq!(b[0], 0x43);
        assert_eq!(r16(&c, &v, 0x12), 2, "num_queues");
        // A 4-byte write over status and the generation byte reports the status byte only.
        assert_eq!(c.write(0x14, &[0xf, 9, 0, 0], &v), Some(0xf));
        assert_eq!(r16(&c, &v, 0x14) >> 8, 0, "generation is read-only");
    }

    #[test]
    fn queue_configuration_through_select() {
        let (mut c, v) = cfg();
        w16(&mut c, &v, 0x16, 1);
        assert_eq!(r16(&c, &v, 0x18), 64, "size starts at the maximum");
        assert_eq!(r16(&c, &v, 0x1e), 1, "notify offset is the queue number");
        w16(&mut c, &v, 0x18, 32);
        w16(&mut c, &v, 0x18, 33); // not a power of two: refused
        w16(&mut c, &v, 0x18, 128); // beyond the maximum: refused
        assert_eq!(r16(&c, &v, 0x18), 32);
        w32(&mut c, &v, 0x20, 0x1000);
        w32(&mut c, &v, 0x24, 0x1);
        c.write(0x28, &0x2_0000_2000u64.to_le_bytes(), &v);
        w32(&mut c, &v, 0x30, 0x3000);
        assert_eq!(c.queues[1].desc_table(), 0x1_0000_1000);
        assert_eq!(c.queues[1].avail_ring(), 0x2_0000_2000);
        assert_eq!(r32(&c, &v, 0x2c), 2);
        assert_eq!(c.queues[1].used_ring(), 0x3000);
        w16(&mut c, &v, 0x1a, 2);
        assert_eq!(r16(&c, &v, 0x1a), 2);
        w16(&mut c, &v, 0x1a, 3);
        assert_eq!(r16(&c, &v, 0x1a), NO_VECTOR, "beyond the MSI-X table");
        w16(&mut c, &v, 0x1c, 1);
        assert!(c.queues[1].ready());
        // An enabled queue keeps its configuration; disabling by writing 0 is ignored.
        w32(&mut c, &v, 0x20, 0x9000);
        w16(&mut c, &v, 0x1c, 0);
        assert_eq!((c.queues[1].desc_table(), c.queues[1].ready()), (0x1_0000_1000, true));
        // A selector beyond the queues reads zero and ignores writes.
        w16(&mut c, &v, 0x16, 9);
        assert_eq!((r16(&c, &v, 0x18), r16(&c, &v, 0x1a)), (0, NO_VECTOR));
        w16(&mut c, &v, 0x18, 4);
        w16(&mut c, &v, 0x1a, 1);
    }

    #[test]
    fn queue_configuration_is_frozen_after_driver_ok() {
        let (mut c, v) = cfg();
        c.status = status::DRIVER_OK;
        w16(&mut c, &v, 0x18, 16);
        w32(&mut c, &v, 0x20, 0x5000);
        w16(&mut c, &v, 0x1c, 1);
        assert_eq!((c.queues[0].size(), c.queues[0].desc_table(), c.queues[0].ready()), (128, 0, false));
    }

    #[test]
    fn odd_offsets_and_sizes_do_not_panic() {
        let (mut c, v) = cfg();
        let mut b = [0u8; 8];
        c.read(0x36, &mut b, &v, 0);
        assert_eq!(&b[2..], &[0; 6]);
        c.read(u64::MAX, &mut b, &v, 0);
        assert_eq!(c.write(0x37, &[1, 2], &v), None);
        assert_eq!(c.write(u64::MAX, &[1], &v), None);
        c.write(0x13, &[0xff, 0x07], &v); // num_queues high byte and status
        assert_eq!(r16(&c, &v, 0x12), 2);
    }

    #[test]
    fn state_round_trips() {
        let (mut c, v) = cfg();
        w32(&mut c, &v, 0x0c, 5);
        w16(&mut c, &v, 0x16, 1);
        w16(&mut c, &v, 0x18, 16);
        c.write(0x20, &0x1_0000_1000u64.to_le_bytes(), &v);
        w16(&mut c, &v, 0x1a, 2);
        w16(&mut c, &v, 0x1c, 1);
        w16(&mut c, &v, 0x10, 1);
        c.status = 0xf;
        let saved = c.save(&v);
        let json = serde_json::to_string(&saved).unwrap();
        let (mut d, dv) = cfg();
        d.restore(&serde_json::from_str(&json).unwrap(), &dv).unwrap();
        assert_eq!(d.save(&dv), saved);
        assert_eq!(
            (d.queues[1].size(), d.queues[1].desc_table(), d.queues[1].ready()),
            (16, 0x1_0000_1000, true)
        );
        // Another queue count, or a size the queue cannot take, is refused and changes nothing.
        let mut bad = saved.clone();
        bad.queues.pop();
        assert!(d.restore(&bad, &dv).is_err());
        let mut bad = saved.clone();
        bad.queues[0].size = 1000;
        let (mut e, ev) = cfg();
        assert!(e.restore(&bad, &ev).is_err());
        assert_eq!(e.status, 0);
    }

    #[test]
    fn reset_clears_negotiation_and_queues() {
        let (mut c, v) = cfg();
        w32(&mut c, &v, 0x0c, 5);
        w16(&mut c, &v, 0x18, 16);
        w16(&mut c, &v, 0x1c, 1);
        c.status = 0xf;
        c.reset();
        assert_eq!(
            (c.driver_features, c.status, c.queues[0].ready(), c.queues[0].size()),
            (0, 0, false, 128)
        );
    }
}
