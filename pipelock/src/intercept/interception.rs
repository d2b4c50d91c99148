//! [`Interception`]: the programs loaded (or their pinned maps re-adopted) by one Pipelock
//! process, attached to any number of cgroups that all share the same maps; and [`detach`],
//! which any process can run against the same pin root.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use aya::maps::RingBuf;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SockOps};
use aya::{Ebpf, EbpfLoader};
use pipelock_common::{DENIED_EVENTS_MAP, ON, SOCK_OPS_PROGRAM};

use super::cgroup;
use super::ebpf_log::{LogPump, TracingLog};
use super::events::DeniedEvents;
use super::hooks::{self, Hook, HOOKS};
use super::maps::{self, InterceptStats, Maps};
use super::pins::PinRoot;
use super::settings::InterceptSettings;
use super::{InterceptError, EBPF_OBJECT};

/// Pipelock's kernel programs in this process, with their (pinned, shared) maps. One per
/// process: every attachment shares its maps, so one original-destination table, one kill
/// switch and one set of counters serve every attached cgroup.
///
/// Dropping it leaves the attachments in place (their links are pinned): the cgroups' connects
/// keep going to Pipelock's listener, which is then closed, so they fail instead of escaping.
/// A new `Interception` with the same pin root re-adopts them; [`detach`] removes them.
pub struct Interception {
    // Fields drop in declaration order: the programs first (the pinned links keep their own
    // references), then the maps, then the log reader, which delivers what is still buffered.
    ebpf: Ebpf,
    maps: Maps,
    pins: PinRoot,
    settings: InterceptSettings,
    attached: Vec<(PathBuf, u64)>,
    _log_pump: Option<LogPump>,
}

impl Interception {
    /// Loads the programs, creating the maps under `pin_root/maps` or re-adopting those pinned
    /// there, and writes `settings`. A kill switch already on in re-adopted maps stays on.
    /// The programs' debug records go to `tracing` when `settings.debug_log` is set.
    ///
    /// # Errors
    /// [`InterceptError::InvalidSettings`], [`InterceptError::PinRootNotBpffs`],
    /// [`InterceptError::IncompatiblePin`], [`InterceptError::NotPermitted`] (not root),
    /// [`InterceptError::Verifier`], and map errors.
    pub fn load(pin_root: &Path, settings: &InterceptSettings) -> Result<Self, InterceptError> {
        let pump = settings.debug_log.then_some(TracingLog);
        Self::load_inner(pin_root, settings, pump)
    }

    /// As [`Interception::load`], but every aya-log record of the programs loaded by this
    /// process goes to `logger` (the programs emit records only while `debug_log` is set).
    ///
    /// # Errors
    /// As [`Interception::load`].
    pub fn load_with_logger<L: log::Log + Send + 'static>(
        pin_root: &Path,
        settings: &InterceptSettings,
        logger: L,
    ) -> Result<Self, InterceptError> {
        Self::load_inner(pin_root, settings, Some(logger))
    }

    fn load_inner<L: log::Log + Send + 'static>(
        pin_root: &Path,
        settings: &InterceptSettings,
        logger: Option<L>,
    ) -> Result<Self, InterceptError> {
        settings.validate()?;
        let started = Instant::now();
        let pins = PinRoot::new(pin_root);
        pins.prepare()?;
        maps::check_pinned(&pins)?;
        raise_memlock_limit();

        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pins.maps_dir())
            .load(EBPF_OBJECT)
            .map_err(|e| InterceptError::load(&e))?;
        // The log reader must exist before the programs load: it holds the log map open.
        let log_pump = match logger {
            Some(logger) => Some(LogPump::start(&mut ebpf, logger)?),
            None => None,
        };
        for hook in HOOKS {
            load_program(&mut ebpf, &hook)?;
        }
        let maps = Maps::take(&mut ebpf)?;
        let kill_switch = maps.settings()?.kill_switch == ON;
        maps.update_settings(|_| settings.kernel(kill_switch))?;
        maps.set_allow_rules(&settings.allow)?;
        tracing::info!(
            pin_root = %pin_root.display(),
            load_ms = started.elapsed().as_secs_f64() * 1000.0,
            kill_switch,
            "eBPF interception programs loaded"
        );
        Ok(Self {
            ebpf,
            maps,
            pins,
            settings: settings.clone(),
            attached: Vec::new(),
            _log_pump: log_pump,
        })
    }

    /// Attaches the programs to the cgroup v2 directory `cgroup` and pins the links under
    /// `<pin root>/links/<cgroup id>/`. Links already pinned there are re-adopted (kept as
    /// they are); missing ones are attached.
    ///
    /// # Errors
    /// [`InterceptError::NotCgroup2`], [`InterceptError::NoCgroupBpf`],
    /// [`InterceptError::NotPermitted`], [`InterceptError::ForeignProgram`] when another
    /// program holds the cgroup's connect4/connect6 hook, [`InterceptError::AttachedElsewhere`]
    /// when Pipelock programs pinned under another root are there. On failure, the links
    /// this call pinned are removed again.
    pub fn attach(&mut self, cgroup: &Path) -> Result<(), InterceptError> {
        let (dir, id) = cgroup::open(cgroup)?;
        let attached = hooks::attached(dir.as_fd()).map_err(|e| query_error(cgroup, &e))?;
        if let Some((hook, program)) = hooks::foreign_program(&attached) {
            return Err(InterceptError::ForeignProgram {
                cgroup: cgroup.to_path_buf(),
                hook: hook.name,
                program: program.name,
                id: program.id,
            });
        }
        let already_pinned = self.pins.pinned_links(id);
        let ours_attached = attached
            .iter()
            .any(|(hook, programs)| hook.exclusive && programs.iter().any(|p| p.is_pipelock()));
        if already_pinned.is_empty() && ours_attached {
            return Err(InterceptError::AttachedElsewhere {
                cgroup: cgroup.to_path_buf(),
                pin_root: self.pins.path().to_path_buf(),
            });
        }
        let links_dir = self.pins.cgroup_links(id);
        std::fs::create_dir_all(&links_dir).map_err(|source| InterceptError::Pin {
            action: "create the pin directory",
            path: links_dir.clone(),
            source,
        })?;

        let mut pinned_now = Vec::new();
        let mut adopted = 0;
        for hook in HOOKS {
            let path = self.pins.link(id, hook.program);
            if PinnedLink::from_pin(&path).is_ok() {
                adopted += 1;
                continue;
            }
            match attach_and_pin(&mut self.ebpf, &hook, dir.as_fd(), &path) {
                Ok(()) => pinned_now.push(path),
                Err(error) => {
                    for path in pinned_now {
                        let _ = std::fs::remove_file(path);
                    }
                    if adopted == 0 {
                        let _ = std::fs::remove_dir(&links_dir);
                    }
                    return Err(error);
                }
            }
        }
        tracing::info!(
            cgroup = %cgroup.display(),
            cgroup_id = id,
            attached = pinned_now.len(),
            re_adopted = adopted,
            "eBPF interception attached"
        );
        if !self.attached.iter().any(|(_, known)| *known == id) {
            self.attached.push((cgroup.to_path_buf(), id));
        }
        Ok(())
    }

    /// The original destination of a connection the transparent listener accepted, by the
    /// listener's peer address (the client's end); removes the record. `None` when there is
    /// none (the connection was not redirected, or it was already asked for).
    #[must_use]
    pub fn original_destination(&self, peer: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
        self.maps.take_original(peer)
    }

    /// Turns the kernel kill switch on or off: while on, every connect and UDP send from the
    /// attached cgroups fails with EPERM, except on sockets with Pipelock's mark.
    ///
    /// # Errors
    /// Fails when the settings map cannot be written.
    pub fn set_kill_switch(&self, on: bool) -> Result<(), InterceptError> {
        self.maps
            .update_settings(|current| pipelock_common::Settings {
                kill_switch: if on { ON } else { 0 },
                ..current
            })?;
        tracing::info!(on, "eBPF kill switch set");
        Ok(())
    }

    /// Whether the kernel kill switch is on.
    ///
    /// # Errors
    /// Fails when the settings map cannot be read.
    pub fn kill_switch(&self) -> Result<bool, InterceptError> {
        Ok(self.maps.settings()?.kill_switch == ON)
    }

    /// Writes new settings (ports, mark, allow rules, debug log); the kill switch is kept.
    ///
    /// # Errors
    /// As [`Interception::load`] for settings and maps.
    pub fn apply_settings(&mut self, settings: &InterceptSettings) -> Result<(), InterceptError> {
        settings.validate()?;
        self.maps
            .update_settings(|current| settings.kernel(current.kill_switch == ON))?;
        self.maps.set_allow_rules(&settings.allow)?;
        self.settings = settings.clone();
        Ok(())
    }

    /// The stream of denied connects and sends. It can be taken once.
    ///
    /// # Errors
    /// [`InterceptError::EventsTaken`] on a second call.
    pub fn denied_events(&mut self) -> Result<DeniedEvents, InterceptError> {
        let map = self
            .ebpf
            .take_map(DENIED_EVENTS_MAP)
            .ok_or(InterceptError::EventsTaken)?;
        let ring =
            RingBuf::try_from(map).map_err(|e| InterceptError::map(DENIED_EVENTS_MAP, &e))?;
        Ok(DeniedEvents::new(ring))
    }

    /// The programs' counters, summed over CPUs and shared by every attached cgroup.
    ///
    /// # Errors
    /// Fails when the counters cannot be read.
    pub fn stats(&self) -> Result<InterceptStats, InterceptError> {
        self.maps.stats()
    }

    /// The settings last written.
    #[must_use]
    pub fn settings(&self) -> &InterceptSettings {
        &self.settings
    }

    /// The pin root.
    #[must_use]
    pub fn pin_root(&self) -> &Path {
        self.pins.path()
    }

    /// The cgroups this process attached (or re-adopted), with their ids.
    #[must_use]
    pub fn attached(&self) -> &[(PathBuf, u64)] {
        &self.attached
    }
}

/// Detaches Pipelock from `cgroup`: unpins its links under `pin_root` (which detaches the
/// programs at once), and unpins the maps when no cgroup is left. Works from any process.
///
/// # Errors
/// [`InterceptError::NotCgroup2`], [`InterceptError::PinRootNotBpffs`],
/// [`InterceptError::NotAttached`] when nothing is pinned for the cgroup, and
/// [`InterceptError::Pin`] when a pin cannot be removed (EPERM: not root).
pub fn detach(pin_root: &Path, cgroup: &Path) -> Result<(), InterceptError> {
    let id = cgroup::cgroup_id(cgroup)?;
    let pins = PinRoot::new(pin_root);
    pins.ensure_bpffs()?;
    let removed = pins.remove_cgroup(id)?;
    if removed == 0 {
        return Err(InterceptError::NotAttached {
            cgroup: cgroup.to_path_buf(),
            pin_root: pin_root.to_path_buf(),
        });
    }
    let remaining = pins.cgroups()?;
    if remaining.is_empty() {
        pins.remove_maps()?;
    }
    tracing::info!(
        cgroup = %cgroup.display(),
        cgroup_id = id,
        links = removed,
        maps_unpinned = remaining.is_empty(),
        "eBPF interception detached"
    );
    Ok(())
}

fn load_program(ebpf: &mut Ebpf, hook: &Hook) -> Result<(), InterceptError> {
    let name = hook.program;
    let program = ebpf
        .program_mut(name)
        .ok_or(InterceptError::MissingProgram(name))?;
    if name == SOCK_OPS_PROGRAM {
        let program: &mut SockOps = program
            .try_into()
            .map_err(|e| InterceptError::program(name, e))?;
        program.load().map_err(|e| InterceptError::program(name, e))
    } else {
        let program: &mut CgroupSockAddr = program
            .try_into()
            .map_err(|e| InterceptError::program(name, e))?;
        program.load().map_err(|e| InterceptError::program(name, e))
    }
}

/// Attaches one program to the cgroup and pins its link at `path`; the process then drops
/// its own reference, so only the pin keeps the link (and [`detach`] can remove it).
fn attach_and_pin(
    ebpf: &mut Ebpf,
    hook: &Hook,
    cgroup: BorrowedFd<'_>,
    path: &Path,
) -> Result<(), InterceptError> {
    let name = hook.program;
    let program = ebpf
        .program_mut(name)
        .ok_or(InterceptError::MissingProgram(name))?;
    let err = |e| InterceptError::program(name, e);
    // `Single` passes flags 0, which BPF_LINK_CREATE requires for cgroups; cgroup links are
    // always multi (they coexist with other programs on the same hook).
    let link: FdLink = if name == SOCK_OPS_PROGRAM {
        let program: &mut SockOps = program.try_into().map_err(err)?;
        let id = program
            .attach(cgroup, CgroupAttachMode::Single)
            .map_err(err)?;
        let link = program.take_link(id).map_err(err)?;
        FdLink::try_from(link).map_err(|e| link_error(name, &e))?
    } else {
        let program: &mut CgroupSockAddr = program.try_into().map_err(err)?;
        let id = program
            .attach(cgroup, CgroupAttachMode::Single)
            .map_err(err)?;
        let link = program.take_link(id).map_err(err)?;
        FdLink::try_from(link).map_err(|e| link_error(name, &e))?
    };
    link.pin(path).map_err(|e| InterceptError::Program {
        program: name,
        detail: format!(
            "cannot pin its link at {}: {}",
            path.display(),
            super::error::chain(&e)
        ),
    })?;
    Ok(())
}

fn link_error(program: &'static str, error: &aya::programs::links::LinkError) -> InterceptError {
    InterceptError::Program {
        program,
        detail: format!(
            "the kernel attached it without a BPF link, which cannot be pinned (Linux >= 5.7 is needed): {}",
            super::error::chain(error)
        ),
    }
}

/// Maps a failed `BPF_PROG_QUERY` on a cgroup to the cause an operator can act on.
fn query_error(cgroup: &Path, error: &std::io::Error) -> InterceptError {
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => InterceptError::NoCgroupBpf {
            detail: format!("BPF_PROG_QUERY on {} failed: {error}", cgroup.display()),
        },
        _ => InterceptError::syscall(
            &format!("query the programs attached to {}", cgroup.display()),
            error,
        ),
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones to the memory cgroup.
/// Raising the limit fails without CAP_SYS_RESOURCE, which is harmless on new kernels, so a
/// failure is only logged.
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit(2) with a valid struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "cannot raise RLIMIT_MEMLOCK; fine on kernels >= 5.11"
        );
    }
}
