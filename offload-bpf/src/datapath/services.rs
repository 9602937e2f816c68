//! The service maps: writing a table into the half packets do not read (as
//! part of [`super::Datapath::sync`]), and reading the connection state the
//! program keeps.
//!
//! The table's hash maps and the masquerade exclusions' trie carry the half
//! in their keys, so a sync upserts the next half's entries beside the
//! active half's, flips, and prunes what neither half holds any more.

use std::collections::{BTreeMap, BTreeSet};

use aya::Ebpf;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use nexthop_offload_bpf_common::service::{
    AffinityEntry, AffinityKey, Backend, BackendKey, BackendSet, Connection, FlowKey, FrontendKey,
    Inputs, L3n4Key, ServiceConfig, SocketKey, counter, masq_key,
};

use super::{Error, HalvedArray, HashMapSync};
use crate::services::ServiceMaps;

/// What the table's hash maps should hold after a sync.
pub(super) struct Wanted {
    frontends: BTreeMap<FrontendKey, BackendSet>,
    backends: BTreeMap<BackendKey, Backend>,
    exclusions: BTreeSet<Exclusion>,
}

/// An entry of `MASQ_EXCLUDE`: its prefix length (the half's byte
/// included) and key data (`masq_key`).
type Exclusion = (u32, [u8; 8]);

/// `MASQ_EXCLUDE` and the entries it holds.
struct ExclusionSync {
    map: LpmTrie<MapData, [u8; 8], u8>,
    held: BTreeSet<Exclusion>,
}

impl ExclusionSync {
    /// Take the map, learning what it holds (a pinned map keeps its entries).
    fn take(ebpf: &mut Ebpf) -> Result<Self, Error> {
        let map: LpmTrie<MapData, [u8; 8], u8> = take(ebpf, "MASQ_EXCLUDE")?;
        let held = map
            .keys()
            .map(|k| k.map(|k| (k.prefix_len(), k.data())))
            .collect::<Result<_, _>>()?;
        Ok(ExclusionSync { map, held })
    }

    fn upsert(&mut self, want: &BTreeSet<Exclusion>) -> Result<usize, Error> {
        let new: Vec<Exclusion> = want.difference(&self.held).copied().collect();
        for &(len, data) in &new {
            self.map.insert(&Key::new(len, data), 1, 0)?;
            self.held.insert((len, data));
        }
        Ok(new.len())
    }

    fn prune(&mut self, want: &BTreeSet<Exclusion>) -> Result<usize, Error> {
        let gone: Vec<Exclusion> = self.held.difference(want).copied().collect();
        for &(len, data) in &gone {
            self.map.remove(&Key::new(len, data))?;
            self.held.remove(&(len, data));
        }
        Ok(gone.len())
    }
}

/// The service stage's maps.
pub(super) struct ServiceMapsSync {
    config: HalvedArray<ServiceConfig>,
    frontends: HashMapSync<FrontendKey, BackendSet>,
    slots: HalvedArray<u32>,
    maglev: HalvedArray<u32>,
    ids: HalvedArray<L3n4Key>,
    backends: HashMapSync<BackendKey, Backend>,
    exclusions: ExclusionSync,
    connections: HashMap<MapData, FlowKey, Connection>,
    replies: HashMap<MapData, FlowKey, FlowKey>,
    affinity: HashMap<MapData, AffinityKey, AffinityEntry>,
    sockets: HashMap<MapData, SocketKey, L3n4Key>,
    inputs: Array<MapData, Inputs>,
    counters: PerCpuArray<MapData, u64>,
    /// The Maglev table size M the maps were sized for.
    maglev_size: u32,
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, Error> {
    Ok(T::try_from(
        ebpf.take_map(name).ok_or(Error::Missing(name))?,
    )?)
}

impl ServiceMapsSync {
    pub(super) fn take(ebpf: &mut Ebpf, maglev_size: u32) -> Result<Self, Error> {
        Ok(ServiceMapsSync {
            config: HalvedArray::take(ebpf, "SVC_CONFIG")?,
            frontends: HashMapSync::take(ebpf, "SVC_FRONTENDS")?,
            slots: HalvedArray::take(ebpf, "SVC_SLOTS")?,
            maglev: HalvedArray::take(ebpf, "SVC_MAGLEV")?,
            ids: HalvedArray::take(ebpf, "SVC_IDS")?,
            backends: HashMapSync::take(ebpf, "SVC_BACKENDS")?,
            exclusions: ExclusionSync::take(ebpf)?,
            connections: take(ebpf, "CT")?,
            replies: take(ebpf, "CT_REPLY")?,
            affinity: take(ebpf, "AFFINITY")?,
            sockets: take(ebpf, "SOCK_REVNAT")?,
            inputs: take(ebpf, "SVC_INPUTS")?,
            counters: take(ebpf, "SVC_COUNTERS")?,
            maglev_size,
        })
    }

    /// The hash map entries after a sync writing `maps` into half `next`:
    /// the active half's as they are, and the next half's anew.
    pub(super) fn wanted(&self, next: u32, maps: Option<&ServiceMaps>) -> Result<Wanted, Error> {
        let active = (next ^ 1) as u8;
        let mut w = Wanted {
            frontends: (self.frontends.held.iter())
                .filter(|(k, _)| k.half == active)
                .map(|(k, v)| (*k, *v))
                .collect(),
            backends: (self.backends.held.iter())
                .filter(|(k, _)| k.half == active)
                .map(|(k, v)| (*k, *v))
                .collect(),
            exclusions: (self.exclusions.held.iter())
                .filter(|(_, data)| data[0] == active)
                .copied()
                .collect(),
        };
        let Some(maps) = maps else { return Ok(w) };
        if maps.config.algorithm == 1 && maps.config.maglev_size != self.maglev_size {
            return Err(Error::MaglevSize {
                table: maps.config.maglev_size,
                loaded: self.maglev_size,
            });
        }
        let half = next as u8;
        for (&(frontend, scope), &set) in &maps.frontends {
            let key = FrontendKey {
                frontend,
                half,
                scope,
                pad: [0; 2],
            };
            w.frontends.insert(key, set);
        }
        for (&backend, &b) in &maps.backends {
            let key = BackendKey {
                backend,
                half,
                pad: [0; 3],
            };
            w.backends.insert(key, b);
        }
        for net in &maps.exclusions {
            let len = 8 + u32::from(net.prefix_len());
            w.exclusions.insert((len, masq_key(half, net.network())));
        }
        Ok(w)
    }

    /// New and changed hash map entries, before the flip.
    pub(super) fn upsert(&mut self, w: &Wanted) -> Result<usize, Error> {
        Ok(self.backends.upsert(&w.backends)?
            + self.frontends.upsert(&w.frontends)?
            + self.exclusions.upsert(&w.exclusions)?)
    }

    /// The arrays of half `next`, before the flip.
    pub(super) fn write_half(
        &mut self,
        next: u32,
        maps: Option<&ServiceMaps>,
    ) -> Result<usize, Error> {
        let Some(m) = maps else {
            return self.config.sync(next, &[ServiceConfig::default()]);
        };
        Ok(self.ids.sync(next, &m.ids)?
            + self.slots.sync(next, &m.slots)?
            + self.maglev.sync(next, &m.maglev)?
            + self.config.sync(next, &[m.config])?)
    }

    /// Hash map entries neither half holds any more, after the grace period.
    pub(super) fn prune(&mut self, w: &Wanted) -> Result<usize, Error> {
        Ok(self.frontends.prune(&w.frontends)?
            + self.backends.prune(&w.backends)?
            + self.exclusions.prune(&w.exclusions)?)
    }

    /// The clock and random number the program uses from now on: `Some`
    /// replays these, `None` goes back to the kernel's.
    pub(super) fn set_inputs(&mut self, given: Option<(u64, u32)>) -> Result<(), Error> {
        let inputs = match given {
            Some((now, random)) => Inputs {
                given: 1,
                random,
                now,
            },
            None => Inputs::default(),
        };
        Ok(self.inputs.set(0, inputs, 0)?)
    }

    /// Every connection entry (live or not yet evicted), by original tuple.
    pub(super) fn connections(&self) -> Result<BTreeMap<FlowKey, Connection>, Error> {
        Ok(self.connections.iter().collect::<Result<_, _>>()?)
    }

    /// Every reply index entry: reply tuple → original tuple.
    pub(super) fn replies(&self) -> Result<BTreeMap<FlowKey, FlowKey>, Error> {
        Ok(self.replies.iter().collect::<Result<_, _>>()?)
    }

    /// Every affinity entry.
    pub(super) fn affinity(&self) -> Result<BTreeMap<AffinityKey, AffinityEntry>, Error> {
        Ok(self.affinity.iter().collect::<Result<_, _>>()?)
    }

    /// Every socket the socket-level balancer sent to a backend → the
    /// frontend it asked for.
    pub(super) fn sockets(&self) -> Result<BTreeMap<SocketKey, L3n4Key>, Error> {
        Ok(self.sockets.iter().collect::<Result<_, _>>()?)
    }

    /// The frontend of one socket's translation, if any.
    pub(super) fn socket(&self, key: &SocketKey) -> Result<Option<L3n4Key>, Error> {
        match self.sockets.get(key, 0) {
            Ok(frontend) => Ok(Some(frontend)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Forget every connection and affinity.
    pub(super) fn clear(&mut self) -> Result<(), Error> {
        for key in self.connections.keys().collect::<Result<Vec<_>, _>>()? {
            self.connections.remove(&key)?;
        }
        for key in self.replies.keys().collect::<Result<Vec<_>, _>>()? {
            self.replies.remove(&key)?;
        }
        for key in self.affinity.keys().collect::<Result<Vec<_>, _>>()? {
            self.affinity.remove(&key)?;
        }
        Ok(())
    }

    /// The stage's counters summed over CPUs (index: `counter::*`).
    pub(super) fn counters(&self) -> Result<[u64; counter::COUNT as usize], Error> {
        let mut counts = [0; counter::COUNT as usize];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = self.counters.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(counts)
    }
}
