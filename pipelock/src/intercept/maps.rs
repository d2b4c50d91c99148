//! Typed handles on the pinned maps, the check that pinned maps fit this build, and the
//! counters.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Mutex;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData, MapError, MapInfo, MapType, PerCpuArray};
use aya::Ebpf;
use pipelock_common::{
    AllowKey, OriginalDestination, PortKey, Settings, AF_INET, AF_INET6, ALLOW_RULES_MAP,
    ALLOW_RULES_MAX_ENTRIES, DENIED_EVENTS_BYTES, DENIED_EVENTS_MAP, ORIG_BY_COOKIE_MAP,
    ORIG_BY_COOKIE_MAX_ENTRIES, ORIG_BY_PORT_MAP, ORIG_BY_PORT_MAX_ENTRIES, SETTINGS_MAP,
    STATS_LEN, STATS_MAP, STAT_ALLOWED_DIRECT, STAT_DENIED_KILL_SWITCH, STAT_DENIED_PROTOCOL,
    STAT_DENIED_UDP, STAT_EVENTS_LOST, STAT_OWN_TRAFFIC, STAT_RECORD_FAILED, STAT_REDIRECTED_DNS,
    STAT_REDIRECTED_TCP,
};
use serde::Serialize;

use super::pins::PinRoot;
use super::settings::AllowRule;
use super::InterceptError;

/// The shape of one map, as this build's programs define it.
#[derive(Debug, Clone, Copy)]
pub(super) struct MapShape {
    pub name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    pub max_entries: u32,
}

/// Every pinned map's shape. An LPM key carries a 4-byte prefix length before the data.
pub(super) fn shapes() -> [MapShape; 6] {
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    [
        MapShape {
            name: SETTINGS_MAP,
            map_type: MapType::Array,
            key_size: 4,
            value_size: size(std::mem::size_of::<Settings>()),
            max_entries: 1,
        },
        MapShape {
            name: ORIG_BY_COOKIE_MAP,
            map_type: MapType::LruHash,
            key_size: 8,
            value_size: size(std::mem::size_of::<OriginalDestination>()),
            max_entries: ORIG_BY_COOKIE_MAX_ENTRIES,
        },
        MapShape {
            name: ORIG_BY_PORT_MAP,
            map_type: MapType::LruHash,
            key_size: size(std::mem::size_of::<PortKey>()),
            value_size: size(std::mem::size_of::<OriginalDestination>()),
            max_entries: ORIG_BY_PORT_MAX_ENTRIES,
        },
        MapShape {
            name: ALLOW_RULES_MAP,
            map_type: MapType::LpmTrie,
            key_size: size(4 + std::mem::size_of::<AllowKey>()),
            value_size: 4,
            max_entries: ALLOW_RULES_MAX_ENTRIES,
        },
        MapShape {
            name: DENIED_EVENTS_MAP,
            map_type: MapType::RingBuf,
            key_size: 0,
            value_size: 0,
            max_entries: DENIED_EVENTS_BYTES,
        },
        MapShape {
            name: STATS_MAP,
            map_type: MapType::PerCpuArray,
            key_size: 4,
            value_size: 8,
            max_entries: STATS_LEN,
        },
    ]
}

/// Fails when a map already pinned under `pins` has another shape than this build's: the
/// loader would silently reuse it, and the programs would misread it.
pub(super) fn check_pinned(pins: &PinRoot) -> Result<(), InterceptError> {
    for shape in shapes() {
        let path = pins.map(shape.name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|e| InterceptError::map(shape.name, &e))?;
        let found_type = info.map_type().ok();
        let fits = found_type == Some(shape.map_type)
            && info.key_size() == shape.key_size
            && info.value_size() == shape.value_size
            && info.max_entries() == shape.max_entries;
        if !fits {
            return Err(InterceptError::IncompatiblePin {
                path,
                detail: format!(
                    "expected {:?} key {} value {} entries {}, found {:?} key {} value {} entries {}",
                    shape.map_type,
                    shape.key_size,
                    shape.value_size,
                    shape.max_entries,
                    found_type,
                    info.key_size(),
                    info.value_size(),
                    info.max_entries()
                ),
            });
        }
    }
    Ok(())
}

/// The maps an [`super::Interception`] writes and reads. Mutexes because aya's update calls
/// take `&mut self`, and the listener asks for original destinations from many tasks.
pub(super) struct Maps {
    settings: Mutex<Array<MapData, Settings>>,
    orig_by_port: Mutex<HashMap<MapData, PortKey, OriginalDestination>>,
    allow: Mutex<LpmTrie<MapData, AllowKey, u32>>,
    stats: PerCpuArray<MapData, u64>,
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, InterceptError> {
    ebpf.take_map(name).ok_or(InterceptError::MissingMap(name))
}

impl Maps {
    /// Takes the maps out of the loaded object (they stay open, so the programs loaded later
    /// still find them).
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, InterceptError> {
        let err = |name| move |e: MapError| InterceptError::map(name, &e);
        Ok(Self {
            settings: Mutex::new(
                Array::try_from(take(ebpf, SETTINGS_MAP)?).map_err(err(SETTINGS_MAP))?,
            ),
            orig_by_port: Mutex::new(
                HashMap::try_from(take(ebpf, ORIG_BY_PORT_MAP)?).map_err(err(ORIG_BY_PORT_MAP))?,
            ),
            allow: Mutex::new(
                LpmTrie::try_from(take(ebpf, ALLOW_RULES_MAP)?).map_err(err(ALLOW_RULES_MAP))?,
            ),
            stats: PerCpuArray::try_from(take(ebpf, STATS_MAP)?).map_err(err(STATS_MAP))?,
        })
    }

    pub(super) fn settings(&self) -> Result<Settings, InterceptError> {
        let map = self.settings.lock().map_err(|_| poisoned(SETTINGS_MAP))?;
        map.get(&0, 0)
            .map_err(|e| InterceptError::map(SETTINGS_MAP, &e))
    }

    /// Replaces the settings entry with `change(current)`.
    pub(super) fn update_settings(
        &self,
        change: impl FnOnce(Settings) -> Settings,
    ) -> Result<(), InterceptError> {
        let mut map = self.settings.lock().map_err(|_| poisoned(SETTINGS_MAP))?;
        let current = map
            .get(&0, 0)
            .map_err(|e| InterceptError::map(SETTINGS_MAP, &e))?;
        map.set(0, change(current), 0)
            .map_err(|e| InterceptError::map(SETTINGS_MAP, &e))
    }

    /// Makes the allow trie hold exactly `rules`: new rules are inserted before stale ones are
    /// removed, so a re-adopting Pipelock never leaves a moment without the rules both share.
    pub(super) fn set_allow_rules(&self, rules: &[AllowRule]) -> Result<(), InterceptError> {
        let mut trie = self.allow.lock().map_err(|_| poisoned(ALLOW_RULES_MAP))?;
        let mut wanted = HashSet::new();
        for rule in rules {
            let (bits, data) = rule.key()?;
            trie.insert(&Key::new(bits, data), 1, 0)
                .map_err(|e| InterceptError::map(ALLOW_RULES_MAP, &e))?;
            wanted.insert((bits, key_bytes(&data)));
        }
        let stale: Vec<Key<AllowKey>> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|key| !wanted.contains(&(key.prefix_len(), key_bytes(&key.data()))))
            .collect();
        for key in stale {
            trie.remove(&key)
                .map_err(|e| InterceptError::map(ALLOW_RULES_MAP, &e))?;
        }
        Ok(())
    }

    /// The original destination recorded for the connection whose client end is `peer`;
    /// removes the record.
    pub(super) fn take_original(&self, peer: SocketAddr) -> Option<SocketAddr> {
        let key = port_key(peer);
        let mut map = self.orig_by_port.lock().ok()?;
        let record = match map.get(&key, 0) {
            Ok(record) => record,
            Err(MapError::KeyNotFound) => return None,
            Err(error) => {
                tracing::warn!(%peer, error = %super::error::chain(&error), "cannot read the original destination");
                return None;
            }
        };
        if let Err(error) = map.remove(&key) {
            tracing::warn!(%peer, error = %super::error::chain(&error), "cannot delete the original-destination record");
        }
        // A dual-stack socket that dialled ::ffff:a.b.c.d meant a.b.c.d: policy (SSRF,
        // allow lists) and the upstream dial should see the IPv4 address.
        socket_addr(&record).map(|addr| match addr {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
                None => addr,
            },
            SocketAddr::V4(_) => addr,
        })
    }

    pub(super) fn stats(&self) -> Result<InterceptStats, InterceptError> {
        read_stats(&self.stats)
    }
}

fn poisoned(map: &'static str) -> InterceptError {
    InterceptError::Map {
        map,
        detail: "a thread panicked while updating it".to_string(),
    }
}

fn key_bytes(key: &AllowKey) -> [u8; 20] {
    let mut bytes = [0u8; 20];
    bytes[0] = key.protocol;
    bytes[1] = key.family;
    bytes[2..4].copy_from_slice(&key.port);
    bytes[4..].copy_from_slice(&key.addr);
    bytes
}

/// The key sock_ops wrote for the connection whose client end is `peer`.
fn port_key(peer: SocketAddr) -> PortKey {
    let family = match peer {
        SocketAddr::V4(_) => AF_INET,
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => AF_INET,
        SocketAddr::V6(_) => AF_INET6,
    };
    PortKey {
        family,
        port: peer.port(),
    }
}

/// A record's address as a `SocketAddr`.
pub(super) fn socket_addr(record: &OriginalDestination) -> Option<SocketAddr> {
    match record.family {
        AF_INET => Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(record.addr[0].to_ne_bytes()),
            record.port,
        ))),
        AF_INET6 => Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(address_bytes(&record.addr)),
            record.port,
            0,
            0,
        ))),
        _ => None,
    }
}

/// The 16 address bytes of the kernel's four network-order words.
pub(super) fn address_bytes(words: &[u32; 4]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    bytes
}

/// The programs' counters, summed over CPUs (shared by every attached cgroup).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InterceptStats {
    /// TCP connects rewritten to the transparent listener.
    pub redirected_tcp: u64,
    /// UDP/53 connects and sends rewritten to the DNS listener.
    pub redirected_dns: u64,
    /// Connects and sends let through by an allow rule.
    pub allowed_direct: u64,
    /// Connects and sends refused by the kill switch.
    pub denied_kill_switch: u64,
    /// UDP refused for want of an allow rule.
    pub denied_udp: u64,
    /// Connects of protocols other than TCP and UDP refused.
    pub denied_protocol: u64,
    /// Sockets with Pipelock's mark, left alone.
    pub own_traffic: u64,
    /// Redirects whose original destination could not be recorded.
    pub record_failed: u64,
    /// Denied events lost because the ring buffer was full.
    pub events_lost: u64,
}

pub(super) fn read_stats(
    map: &PerCpuArray<MapData, u64>,
) -> Result<InterceptStats, InterceptError> {
    let read = |index: u32| -> Result<u64, InterceptError> {
        let values = map
            .get(&index, 0)
            .map_err(|e| InterceptError::map(STATS_MAP, &e))?;
        Ok(values.iter().fold(0u64, |sum, v| sum.wrapping_add(*v)))
    };
    Ok(InterceptStats {
        redirected_tcp: read(STAT_REDIRECTED_TCP)?,
        redirected_dns: read(STAT_REDIRECTED_DNS)?,
        allowed_direct: read(STAT_ALLOWED_DIRECT)?,
        denied_kill_switch: read(STAT_DENIED_KILL_SWITCH)?,
        denied_udp: read(STAT_DENIED_UDP)?,
        denied_protocol: read(STAT_DENIED_PROTOCOL)?,
        own_traffic: read(STAT_OWN_TRAFFIC)?,
        record_failed: read(STAT_RECORD_FAILED)?,
        events_lost: read(STAT_EVENTS_LOST)?,
    })
}

/// Opens a pinned map.
pub(super) fn open_pinned(pins: &PinRoot, name: &'static str) -> Result<Map, InterceptError> {
    let data = MapData::from_pin(pins.map(name)).map_err(|e| InterceptError::map(name, &e))?;
    Map::from_map_data(data).map_err(|e| InterceptError::map(name, &e))
}

/// How many entries a pinned hash map or trie holds now (`None` for arrays and ring
/// buffers, whose size is fixed).
pub(super) fn count_entries(map: &Map) -> Option<u64> {
    let count = match map {
        Map::LruHashMap(_) | Map::HashMap(_) if map_key_size(map) == Some(8) => {
            HashMap::<&MapData, u64, OriginalDestination>::try_from(map)
                .ok()?
                .keys()
                .filter(Result::is_ok)
                .count()
        }
        Map::LruHashMap(_) | Map::HashMap(_) => {
            HashMap::<&MapData, PortKey, OriginalDestination>::try_from(map)
                .ok()?
                .keys()
                .filter(Result::is_ok)
                .count()
        }
        Map::LpmTrie(_) => LpmTrie::<&MapData, AllowKey, u32>::try_from(map)
            .ok()?
            .keys()
            .filter(Result::is_ok)
            .count(),
        _ => return None,
    };
    u64::try_from(count).ok()
}

fn map_key_size(map: &Map) -> Option<u32> {
    match map {
        Map::LruHashMap(data) | Map::HashMap(data) => data.info().ok().map(|i| i.key_size()),
        _ => None,
    }
}
