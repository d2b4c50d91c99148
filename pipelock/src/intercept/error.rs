//! Errors from loading and attaching the eBPF programs, worded for the operator.

use std::io;
use std::path::PathBuf;

/// Why the eBPF programs could not be loaded, attached or read.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error("{path} is not a cgroup v2 directory ({reason}); mount one with `mount -t cgroup2 none DIR` or use /sys/fs/cgroup/unified")]
    NotCgroup2 { path: PathBuf, reason: String },
    #[error("cannot open cgroup {path}: {source}")]
    OpenCgroup { path: PathBuf, source: io::Error },
    #[error("cannot load the embedded eBPF object: {0} (loading BPF programs needs root or CAP_BPF + CAP_NET_ADMIN)")]
    Load(#[source] aya::EbpfError),
    #[error("the embedded eBPF object has no program {0:?}; the binary was built from a different pipelock-ebpf")]
    MissingProgram(&'static str),
    #[error("the embedded eBPF object has no map {0:?}; the binary was built from a different pipelock-ebpf")]
    MissingMap(&'static str),
    #[error("eBPF program {program}: {source} (needs root or CAP_BPF + CAP_NET_ADMIN)")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot start reading the programs' log records: {0}")]
    Log(String),
}
