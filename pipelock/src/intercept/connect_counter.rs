//! The connect4/connect6 programs: attached to one cgroup, they count every `connect()` made
//! by its processes, per cgroup and address family, and log each one.
//!
//! Dropping a [`ConnectCounter`] (or calling [`ConnectCounter::detach`]) detaches the programs:
//! aya attaches through BPF links owned by this process, so they also go away if it dies.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::{MapData, PerCpuHashMap};
use aya::programs::{CgroupAttachMode, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader};
use pipelock_common::{ConnectCount, CONNECT4_PROGRAM, CONNECT6_PROGRAM, CONNECT_COUNTS_MAP};

use super::cgroup::ensure_cgroup2;
use super::ebpf_log::{LogPump, TracingLog};
use super::{InterceptError, EBPF_OBJECT};

/// The connect-counting programs, loaded and attached to one cgroup.
pub struct ConnectCounter {
    // Fields drop in declaration order: first the programs (unloading them detaches them, so
    // no new records are written), then the map, then the log reader, which delivers the
    // records still in the ring buffer before it stops.
    _ebpf: Ebpf,
    counts: PerCpuHashMap<MapData, u64, ConnectCount>,
    _log_pump: LogPump,
    cgroup: PathBuf,
    attach_time: Duration,
}

impl ConnectCounter {
    /// Loads the embedded programs and attaches them to `cgroup_dir`; their log records go to
    /// `tracing`.
    ///
    /// # Errors
    /// See [`ConnectCounter::attach_with_logger`].
    pub fn attach(cgroup_dir: &Path) -> Result<Self, InterceptError> {
        Self::attach_with_logger(cgroup_dir, TracingLog)
    }

    /// Loads the embedded programs and attaches them to `cgroup_dir`, handing their log records
    /// to `logger`.
    ///
    /// # Errors
    /// Fails when `cgroup_dir` is not a cgroup v2 directory
    /// ([`InterceptError::NotCgroup2`]), when the process may not load BPF programs (it needs
    /// root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON: [`InterceptError::NotPermitted`]), or when
    /// the verifier rejects a program ([`InterceptError::Verifier`], with the verifier log).
    pub fn attach_with_logger<L: log::Log + Send + 'static>(
        cgroup_dir: &Path,
        logger: L,
    ) -> Result<Self, InterceptError> {
        ensure_cgroup2(cgroup_dir)?;
        let cgroup = File::open(cgroup_dir).map_err(|source| InterceptError::OpenCgroup {
            path: cgroup_dir.to_path_buf(),
            source,
        })?;
        let started = Instant::now();
        raise_memlock_limit();

        let mut ebpf = EbpfLoader::new()
            .load(EBPF_OBJECT)
            .map_err(|e| InterceptError::load(&e))?;
        // The log reader must exist before the programs load: it holds the log map open.
        let log_pump = LogPump::start(&mut ebpf, logger)?;

        for name in [CONNECT4_PROGRAM, CONNECT6_PROGRAM] {
            let program: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(InterceptError::MissingProgram(name))?
                .try_into()
                .map_err(|e| InterceptError::program(name, e))?;
            program
                .load()
                .map_err(|e| InterceptError::program(name, e))?;
            program
                .attach(&cgroup, CgroupAttachMode::Single)
                .map_err(|e| InterceptError::program(name, e))?;
        }

        let map = ebpf
            .take_map(CONNECT_COUNTS_MAP)
            .ok_or(InterceptError::MissingMap(CONNECT_COUNTS_MAP))?;
        let counts = PerCpuHashMap::try_from(map)
            .map_err(|e| InterceptError::map(CONNECT_COUNTS_MAP, &e))?;
        let attach_time = started.elapsed();
        tracing::info!(
            cgroup = %cgroup_dir.display(),
            attach_ms = attach_time.as_secs_f64() * 1000.0,
            "eBPF connect4/connect6 programs attached"
        );
        Ok(Self {
            _ebpf: ebpf,
            counts,
            _log_pump: log_pump,
            cgroup: cgroup_dir.to_path_buf(),
            attach_time,
        })
    }

    /// Connects counted so far for the cgroup with id `cgroup_id` (see [`super::cgroup_id`]),
    /// summed over CPUs. A cgroup that never connected has a zero count.
    ///
    /// # Errors
    /// Fails when the map cannot be read.
    pub fn connects(&self, cgroup_id: u64) -> Result<ConnectCount, InterceptError> {
        match self.counts.get(&cgroup_id, 0) {
            Ok(per_cpu) => {
                Ok(per_cpu
                    .iter()
                    .fold(ConnectCount::default(), |sum, c| ConnectCount {
                        ipv4: sum.ipv4.saturating_add(c.ipv4),
                        ipv6: sum.ipv6.saturating_add(c.ipv6),
                    }))
            }
            Err(aya::maps::MapError::KeyNotFound) => Ok(ConnectCount::default()),
            Err(error) => Err(InterceptError::map(CONNECT_COUNTS_MAP, &error)),
        }
    }

    /// The cgroup the programs are attached to.
    #[must_use]
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// How long loading and attaching took.
    #[must_use]
    pub fn attach_time(&self) -> Duration {
        self.attach_time
    }

    /// Detaches and unloads the programs (dropping the counter does the same).
    pub fn detach(self) {
        let cgroup = self.cgroup.clone();
        drop(self);
        tracing::info!(cgroup = %cgroup.display(), "eBPF programs detached");
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
