//! The GPUs a pipeline has seen: each gets a dense id (its index here, which the
//! stages use to keep per-GPU state in vectors), its identity from the latest sample,
//! and its home: the source partition its rows come from. Messages are keyed by GPU,
//! so a GPU has one home, and a partition's checkpoint holds the state of the GPUs at
//! home there.

use ahash::AHashMap as HashMap;
use serde::{Deserialize, Serialize};

/// A GPU's identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GpuInfo {
    pub uuid: String,
    pub hostname: String,
    pub model: Option<String>,
}

/// Every GPU seen, by id.
#[derive(Debug, Default)]
pub struct Fleet {
    gpus: Vec<GpuInfo>,
    ids: HashMap<String, u32>,
    /// The partition each GPU's rows come from (none: not held here now).
    home: Vec<Option<i32>>,
}

impl Fleet {
    /// The id of the GPU `uuid`, registered on first sight; the hostname follows the
    /// latest sample, the model the first one that names it.
    pub fn intern(&mut self, uuid: &str, hostname: &str, model: Option<&str>) -> u32 {
        if let Some(&id) = self.ids.get(uuid) {
            let info = &mut self.gpus[id as usize];
            if info.hostname != hostname {
                info.hostname = hostname.to_owned();
            }
            if info.model.is_none() {
                info.model = model.map(str::to_owned);
            }
            return id;
        }
        let id = self.gpus.len() as u32;
        self.gpus.push(GpuInfo {
            uuid: uuid.to_owned(),
            hostname: hostname.to_owned(),
            model: model.map(str::to_owned),
        });
        self.ids.insert(uuid.to_owned(), id);
        self.home.push(None);
        id
    }

    /// The id of a GPU seen before.
    pub fn id(&self, uuid: &str) -> Option<u32> {
        self.ids.get(uuid).copied()
    }

    #[cfg(test)]
    pub fn gpu(&self, id: u32) -> &GpuInfo {
        &self.gpus[id as usize]
    }

    pub fn gpus(&self) -> &[GpuInfo] {
        &self.gpus
    }

    pub fn len(&self) -> usize {
        self.gpus.len()
    }

    /// The partition a GPU's rows come from, once one has arrived.
    pub fn home(&self, id: u32) -> Option<i32> {
        self.home.get(id as usize).copied().flatten()
    }

    pub fn set_home(&mut self, id: u32, partition: i32) {
        if let Some(h) = self.home.get_mut(id as usize) {
            *h = Some(partition);
        }
    }

    /// The GPUs at home in any of `partitions`.
    pub fn at_home_in(&self, partitions: &[i32]) -> Vec<u32> {
        (0..self.gpus.len() as u32)
            .filter(|&g| self.home(g).is_some_and(|h| partitions.contains(&h)))
            .collect()
    }

    /// The GPUs went with their partitions to another instance: no home here now.
    pub fn release(&mut self, gpus: &[u32]) {
        for &g in gpus {
            if let Some(h) = self.home.get_mut(g as usize) {
                *h = None;
            }
        }
    }
}
