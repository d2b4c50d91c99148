//! `status`: what is pinned under a pin root and what the kernel says about it — the
//! attachments (cgroup path and id, each program pinned and attached), the maps (size and
//! entries), the settings and the counters. Read-only; works from any process.

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use pipelock_common::{Settings, ON, SETTINGS_MAP, STATS_MAP};
use serde::Serialize;

use super::cgroup;
use super::hooks::{self, HOOKS};
use super::maps::{self, InterceptStats};
use super::pins::PinRoot;
use super::InterceptError;

/// Everything `pipelock status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct InterceptStatus {
    pub pin_root: PathBuf,
    pub attachments: Vec<Attachment>,
    pub maps: Vec<MapStatus>,
    /// `None` when no maps are pinned.
    pub settings: Option<SettingsStatus>,
    /// `None` when no maps are pinned.
    pub stats: Option<InterceptStats>,
}

/// The programs pinned for one cgroup.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub cgroup_id: u64,
    /// A directory of the cgroup, found under this process's cgroup v2 mounts; `None` when the
    /// cgroup is gone (its links then do nothing: `pipelock detach` cannot name it, remove
    /// `<pin root>/links/<id>` by hand).
    pub cgroup: Option<PathBuf>,
    pub programs: Vec<ProgramStatus>,
}

/// One hook of an attachment.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramStatus {
    /// The cgroup hook (`connect4`, `sock_ops`, …).
    pub hook: &'static str,
    pub program: &'static str,
    /// A link is pinned for it.
    pub pinned: bool,
    /// The kernel lists the pinned link's program on the cgroup's hook.
    pub attached: bool,
}

/// One pinned map.
#[derive(Debug, Clone, Serialize)]
pub struct MapStatus {
    pub name: &'static str,
    pub pinned: bool,
    /// Capacity: entries, or bytes for the ring buffer.
    pub max_entries: u32,
    /// Entries now, for hash maps and the allow trie.
    pub entries: Option<u64>,
}

/// The settings the programs use now.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SettingsStatus {
    pub transparent_port: u16,
    pub dns_port: u16,
    pub mark: u32,
    pub kill_switch: bool,
    pub debug_log: bool,
}

impl From<Settings> for SettingsStatus {
    fn from(s: Settings) -> Self {
        Self {
            transparent_port: s.transparent_port,
            dns_port: s.dns_port,
            mark: s.mark,
            kill_switch: s.kill_switch == ON,
            debug_log: s.debug_log == ON,
        }
    }
}

/// Reads the state under `pin_root`. A pin root that does not exist yet reports nothing
/// attached.
///
/// # Errors
/// [`InterceptError::PinRootNotBpffs`]; [`InterceptError::NotPermitted`] when the maps cannot
/// be opened (not root); map errors.
pub fn status(pin_root: &Path) -> Result<InterceptStatus, InterceptError> {
    let pins = PinRoot::new(pin_root);
    pins.ensure_bpffs()?;
    let mut attachments = Vec::new();
    for id in pins.cgroups()? {
        attachments.push(attachment(&pins, id));
    }
    let mut map_status = Vec::new();
    let mut settings = None;
    let mut stats = None;
    for shape in maps::shapes() {
        let pinned = pins.map(shape.name).exists();
        let mut entries = None;
        if pinned {
            let map = maps::open_pinned(&pins, shape.name)?;
            entries = maps::count_entries(&map);
            if shape.name == SETTINGS_MAP {
                settings = Some(read_settings(map)?);
            } else if shape.name == STATS_MAP {
                stats = Some(read_counters(map)?);
            }
        }
        map_status.push(MapStatus {
            name: shape.name,
            pinned,
            max_entries: shape.max_entries,
            entries,
        });
    }
    Ok(InterceptStatus {
        pin_root: pin_root.to_path_buf(),
        attachments,
        maps: map_status,
        settings,
        stats,
    })
}

fn read_settings(map: Map) -> Result<SettingsStatus, InterceptError> {
    let array =
        Array::<_, Settings>::try_from(map).map_err(|e| InterceptError::map(SETTINGS_MAP, &e))?;
    let settings = array
        .get(&0, 0)
        .map_err(|e| InterceptError::map(SETTINGS_MAP, &e))?;
    Ok(settings.into())
}

fn read_counters(map: Map) -> Result<InterceptStats, InterceptError> {
    let array =
        PerCpuArray::<_, u64>::try_from(map).map_err(|e| InterceptError::map(STATS_MAP, &e))?;
    maps::read_stats(&array)
}

fn attachment(pins: &PinRoot, id: u64) -> Attachment {
    let path = cgroup::find_path(id);
    let queried = path
        .as_deref()
        .and_then(|p| File::open(p).ok())
        .and_then(|dir| hooks::attached(dir.as_fd()).ok());
    let programs = HOOKS
        .iter()
        .map(|hook| {
            let link = PinnedLink::from_pin(pins.link(id, hook.program)).ok();
            let program_id = link
                .map(FdLink::from)
                .and_then(|link| link.info().ok())
                .map(|info| info.program_id());
            let attached = match (program_id, &queried) {
                (Some(program_id), Some(queried)) => queried.iter().any(|(h, programs)| {
                    h.program == hook.program && programs.iter().any(|p| p.id == program_id)
                }),
                _ => false,
            };
            ProgramStatus {
                hook: hook.name,
                program: hook.program,
                pinned: program_id.is_some(),
                attached,
            }
        })
        .collect();
    Attachment {
        cgroup_id: id,
        cgroup: path,
        programs,
    }
}

impl fmt::Display for InterceptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pin root: {}", self.pin_root.display())?;
        if self.attachments.is_empty() {
            writeln!(f, "attachments: none")?;
        }
        for attachment in &self.attachments {
            let path = attachment
                .cgroup
                .as_deref()
                .map_or_else(|| "(cgroup gone)".to_string(), |p| p.display().to_string());
            let attached = attachment.programs.iter().filter(|p| p.attached).count();
            writeln!(
                f,
                "cgroup {path} (id {}): {attached}/{} programs attached",
                attachment.cgroup_id,
                attachment.programs.len()
            )?;
            for program in &attachment.programs {
                let state = match (program.pinned, program.attached) {
                    (true, true) => "attached",
                    (true, false) => "pinned, NOT attached",
                    (false, _) => "missing",
                };
                writeln!(f, "  {:<13} {:<16} {state}", program.hook, program.program)?;
            }
        }
        if let Some(settings) = &self.settings {
            writeln!(
                f,
                "settings: transparent_port {} dns_port {} mark {:#x} kill_switch {} debug_log {}",
                settings.transparent_port,
                settings.dns_port,
                settings.mark,
                if settings.kill_switch { "ON" } else { "off" },
                if settings.debug_log { "on" } else { "off" }
            )?;
        }
        writeln!(f, "maps:")?;
        for map in &self.maps {
            let entries = map
                .entries
                .map_or_else(String::new, |n| format!(", {n} entries"));
            let pinned = if map.pinned { "" } else { " (not pinned)" };
            writeln!(
                f,
                "  {:<14} capacity {}{entries}{pinned}",
                map.name, map.max_entries
            )?;
        }
        if let Some(stats) = &self.stats {
            writeln!(f, "counters:")?;
            for (name, value) in [
                ("redirected_tcp", stats.redirected_tcp),
                ("redirected_dns", stats.redirected_dns),
                ("allowed_direct", stats.allowed_direct),
                ("denied_kill_switch", stats.denied_kill_switch),
                ("denied_udp", stats.denied_udp),
                ("denied_protocol", stats.denied_protocol),
                ("own_traffic", stats.own_traffic),
                ("record_failed", stats.record_failed),
                ("events_lost", stats.events_lost),
            ] {
                writeln!(f, "  {name:<19} {value}")?;
            }
        }
        Ok(())
    }
}
