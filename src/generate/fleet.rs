//! The synthetic fleet: GPU models and their limits, hosts, UUIDs, PCI addresses,
//! racks, and which input shape (and time style) each host sends.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::dump::kafka_partition;

/// GPUs per host (a DGX/HGX board).
pub const GPUS_PER_HOST: usize = 8;
/// Hosts per rack.
const HOSTS_PER_RACK: usize = 4;

/// A GPU model and the limits the simulation (and the health model) key on.
#[derive(Debug)]
pub struct ModelSpec {
    /// The exact model string the collector reports.
    pub name: &'static str,
    /// Hostname prefix of hosts carrying this model.
    pub host_prefix: &'static str,
    pub power_limit_w: u32,
    pub max_sm_clock: u32,
    pub idle_sm_clock: u32,
    pub mem_clock: u32,
    pub fb_total_mib: u64,
    /// PCI bus numbers of the 8 GPUs of one host.
    pub bus_ids: [&'static str; GPUS_PER_HOST],
}

const DGX_H100_BUSES: [&str; 8] = [
    "00000000:18:00.0",
    "00000000:2A:00.0",
    "00000000:3A:00.0",
    "00000000:5D:00.0",
    "00000000:9A:00.0",
    "00000000:AB:00.0",
    "00000000:BA:00.0",
    "00000000:DB:00.0",
];
const DGX_A100_BUSES: [&str; 8] = [
    "00000000:07:00.0",
    "00000000:0F:00.0",
    "00000000:47:00.0",
    "00000000:4E:00.0",
    "00000000:87:00.0",
    "00000000:90:00.0",
    "00000000:B7:00.0",
    "00000000:BD:00.0",
];
const PCIE_BUSES: [&str; 8] = [
    "00000000:17:00.0",
    "00000000:31:00.0",
    "00000000:4B:00.0",
    "00000000:65:00.0",
    "00000000:98:00.0",
    "00000000:B1:00.0",
    "00000000:CA:00.0",
    "00000000:E3:00.0",
];

pub static H100_SXM: ModelSpec = ModelSpec {
    name: "NVIDIA H100 80GB HBM3",
    host_prefix: "dgx-h100",
    power_limit_w: 700,
    max_sm_clock: 1980,
    idle_sm_clock: 345,
    mem_clock: 2619,
    fb_total_mib: 81559,
    bus_ids: DGX_H100_BUSES,
};
pub static A100_SXM: ModelSpec = ModelSpec {
    name: "NVIDIA A100-SXM4-80GB",
    host_prefix: "dgx-a100",
    power_limit_w: 400,
    max_sm_clock: 1410,
    idle_sm_clock: 210,
    mem_clock: 1593,
    fb_total_mib: 81920,
    bus_ids: DGX_A100_BUSES,
};
pub static H100_PCIE: ModelSpec = ModelSpec {
    name: "NVIDIA H100 PCIe",
    host_prefix: "hgx-h100p",
    power_limit_w: 350,
    max_sm_clock: 1755,
    idle_sm_clock: 345,
    mem_clock: 1593,
    fb_total_mib: 81559,
    bus_ids: PCIE_BUSES,
};
pub static A100_PCIE: ModelSpec = ModelSpec {
    name: "NVIDIA A100 80GB PCIe",
    host_prefix: "hgx-a100p",
    power_limit_w: 300,
    max_sm_clock: 1410,
    idle_sm_clock: 210,
    mem_clock: 1512,
    fb_total_mib: 81920,
    bus_ids: PCIE_BUSES,
};

/// The two accepted input shapes (DESIGN 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Nested,
    Flat,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Nested => "nested",
            Shape::Flat => "flat",
        }
    }
}

/// How a flat-shape host writes `time` (the nested shape always writes RFC 3339).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeStyle {
    Rfc3339,
    EpochMillis,
}

/// One GPU of the fleet and everything static about it.
#[derive(Debug)]
pub struct GpuInfo {
    pub uuid: String,
    pub hostname: String,
    pub device_index: u32,
    pub pci_bus_id: &'static str,
    pub model: &'static ModelSpec,
    pub rack_id: String,
    pub shape: Shape,
    pub time_style: TimeStyle,
    /// Kafka partition of this GPU's key.
    pub partition: i32,
}

/// A well-mixed 64-bit hash (splitmix64 finaliser), used to derive stable identities.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn gpu_uuid(seed: u64, index: usize) -> String {
    let a = mix64(seed ^ mix64(index as u64 ^ 0x5555_0000_aaaa));
    let b = mix64(a ^ 0x1234_5678_9abc_def0);
    format!(
        "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Builds the fleet: `gpus` GPUs, 8 per host (the last host may be partial).
///
/// Host models: with 32 GPUs or more, one host of each PCIe model; about a quarter of the
/// hosts (at least one when there are two hosts or more) are A100 SXM4; the rest H100 SXM5.
/// About one host in four (at least one when there are two or more) sends the flat shape,
/// alternating epoch-millisecond and RFC 3339 `time` between flat hosts.
pub fn build_fleet(gpus: usize, seed: u64, partitions: i32, rng: &mut ChaCha8Rng) -> Vec<GpuInfo> {
    let hosts = gpus.div_ceil(GPUS_PER_HOST);
    let mut order: Vec<usize> = (0..hosts).collect();
    order.shuffle(rng);
    let mut models: Vec<&'static ModelSpec> = vec![&H100_SXM; hosts];
    let mut next = 0;
    if gpus >= 32 {
        models[order[0]] = &H100_PCIE;
        models[order[1]] = &A100_PCIE;
        next = 2;
    }
    let a100_hosts = if hosts >= 2 {
        ((hosts as f64 / 4.0).round() as usize).max(1)
    } else {
        0
    };
    for &h in order.iter().skip(next).take(a100_hosts) {
        models[h] = &A100_SXM;
    }

    order.shuffle(rng);
    let flat_hosts = if hosts >= 2 {
        ((hosts as f64 / 4.0).round() as usize).max(1)
    } else {
        0
    };
    let mut styles: Vec<Option<TimeStyle>> = vec![None; hosts];
    for (k, &h) in order.iter().take(flat_hosts).enumerate() {
        styles[h] = Some(if k % 2 == 0 {
            TimeStyle::EpochMillis
        } else {
            TimeStyle::Rfc3339
        });
    }

    let mut per_prefix: Vec<(&'static str, usize)> = Vec::new();
    let mut hostnames = Vec::with_capacity(hosts);
    for model in &models {
        let n = match per_prefix.iter_mut().find(|(p, _)| *p == model.host_prefix) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                per_prefix.push((model.host_prefix, 1));
                1
            }
        };
        hostnames.push(format!("{}-{:03}", model.host_prefix, n));
    }

    (0..gpus)
        .map(|i| {
            let host = i / GPUS_PER_HOST;
            let dev = i % GPUS_PER_HOST;
            let model = models[host];
            let uuid = gpu_uuid(seed, i);
            let partition = kafka_partition(uuid.as_bytes(), partitions);
            GpuInfo {
                partition,
                uuid,
                hostname: hostnames[host].clone(),
                device_index: dev as u32,
                pci_bus_id: model.bus_ids[dev],
                model,
                rack_id: format!("r{:02}", 1 + host / HOSTS_PER_RACK),
                shape: if styles[host].is_some() {
                    Shape::Flat
                } else {
                    Shape::Nested
                },
                time_style: styles[host].unwrap_or(TimeStyle::Rfc3339),
            }
        })
        .collect()
}
