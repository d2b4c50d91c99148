//! Errors from loading and attaching the eBPF programs, worded for the operator.
//!
//! aya's errors keep the kernel's errno in their `source()` chain, not in their message
//! ("failed to create map `X`"), so the messages here render the whole chain, and a refusal
//! for lack of privileges (EPERM) gets its own variant that says what to grant.

use std::error::Error;
use std::io;
use std::path::PathBuf;

/// Why the eBPF programs could not be loaded, attached, detached or read.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error("{path} is not a cgroup v2 directory ({reason}); mount one with `mount -t cgroup2 none DIR` or use /sys/fs/cgroup/unified")]
    NotCgroup2 { path: PathBuf, reason: String },
    #[error("cannot open cgroup {path}: {source}")]
    OpenCgroup { path: PathBuf, source: io::Error },
    #[error("the kernel refused to {action}: {detail}; run pipelock as root, or grant it CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")]
    NotPermitted { action: String, detail: String },
    #[error("this kernel has no cgroup BPF support (CONFIG_CGROUP_BPF): {detail}; transparent interception needs Linux >= 5.8 built with CONFIG_CGROUP_BPF=y")]
    NoCgroupBpf { detail: String },
    #[error("cgroup {cgroup} already has a program that is not Pipelock's on its {hook} hook ({program:?}, id {id}); detach it first (`bpftool cgroup show {cgroup}` lists it), Pipelock will not run alongside another redirector")]
    ForeignProgram {
        cgroup: PathBuf,
        hook: &'static str,
        program: String,
        id: u32,
    },
    #[error("Pipelock's programs are already attached to cgroup {cgroup}, but not pinned under {pin_root}: another Pipelock with a different intercept.pin_path owns them; use the same pin path, or detach them with that pin path")]
    AttachedElsewhere { cgroup: PathBuf, pin_root: PathBuf },
    #[error("the pin root {path} is not on a BPF filesystem ({reason}); mount one with `mount -t bpf bpf /sys/fs/bpf`, or set intercept.pin_path to a directory on bpffs")]
    PinRootNotBpffs { path: PathBuf, reason: String },
    #[error("cannot {action} {path}: {source}")]
    Pin {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the map pinned at {path} does not match this build of Pipelock ({detail}); an older Pipelock pinned it: run `pipelock detach` for every attached cgroup (with the same pin path), then attach again")]
    IncompatiblePin { path: PathBuf, detail: String },
    #[error("nothing is attached to cgroup {cgroup} under pin root {pin_root}")]
    NotAttached { cgroup: PathBuf, pin_root: PathBuf },
    #[error("invalid interception settings: {0}")]
    InvalidSettings(String),
    #[error("cannot load the embedded eBPF object: {0}")]
    Load(String),
    #[error("the kernel verifier rejected eBPF program {program} ({errno}); verifier log:\n{log}")]
    Verifier {
        program: &'static str,
        errno: io::Error,
        log: String,
    },
    #[error("the embedded eBPF object has no program {0:?}; the binary was built from a different pipelock-ebpf")]
    MissingProgram(&'static str),
    #[error("the embedded eBPF object has no map {0:?}; the binary was built from a different pipelock-ebpf")]
    MissingMap(&'static str),
    #[error("eBPF program {program}: {detail}")]
    Program {
        program: &'static str,
        detail: String,
    },
    #[error("eBPF map {map}: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("cannot start reading the programs' log records: {0}")]
    Log(String),
    #[error("the denied-event stream was already taken from this Interception")]
    EventsTaken,
    #[error("cannot wait for denied events: {0}")]
    Events(io::Error),
}

impl InterceptError {
    /// Loading the object (creating its maps) failed.
    pub(super) fn load(error: &aya::EbpfError) -> Self {
        if is_not_permitted(error) {
            return Self::NotPermitted {
                action: "create the eBPF maps".to_string(),
                detail: chain(error),
            };
        }
        Self::Load(chain(error))
    }

    /// Loading or attaching `program` failed.
    pub(super) fn program(program: &'static str, error: aya::programs::ProgramError) -> Self {
        if is_not_permitted(&error) {
            return Self::NotPermitted {
                action: format!("load or attach eBPF program {program}"),
                detail: chain(&error),
            };
        }
        match error {
            aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log,
            } => Self::Verifier {
                program,
                errno: io_error,
                log: verifier_log.to_string(),
            },
            other => Self::Program {
                program,
                detail: chain(&other),
            },
        }
    }

    /// Opening or reading `map` failed.
    pub(super) fn map(map: &'static str, error: &aya::maps::MapError) -> Self {
        if is_not_permitted(error) {
            return Self::NotPermitted {
                action: format!("open eBPF map {map}"),
                detail: chain(error),
            };
        }
        Self::Map {
            map,
            detail: chain(error),
        }
    }

    /// A raw BPF syscall (`what`) failed with `error`.
    pub(super) fn syscall(what: &str, error: &io::Error) -> Self {
        match error.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Self::NotPermitted {
                action: what.to_string(),
                detail: error.to_string(),
            },
            _ => Self::Load(format!("{what}: {error}")),
        }
    }
}

/// `error` and its sources, joined by ": ".
pub(super) fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // thiserror's `transparent` variants repeat their source's message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// True when some error in the chain is EPERM from the kernel.
fn is_not_permitted(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.raw_os_error() == Some(libc::EPERM))
        {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to create map `X`")]
    struct CreateError {
        #[source]
        io_error: io::Error,
    }

    #[test]
    fn messages_carry_the_errno_of_the_source_chain() {
        let error = CreateError {
            io_error: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(is_not_permitted(&error));
        let text = chain(&error);
        assert!(text.starts_with("failed to create map `X`: "), "{text}");
        assert!(text.contains("os error 1"), "{text}");

        let other = CreateError {
            io_error: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(!is_not_permitted(&other));
    }
}
