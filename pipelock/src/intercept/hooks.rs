//! The cgroup hooks Pipelock attaches to, and what is attached to them now.
//!
//! aya 0.14 has no public `BPF_PROG_QUERY` for cgroup sock_addr and sock_ops hooks, so the
//! query is made here with the raw syscall. Program names come from the kernel (`bpf_prog_info`
//! through aya's `loaded_programs`), which keeps 15 bytes of a name; every Pipelock program
//! name fits (see pipelock-common).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use pipelock_common::{
    CONNECT4_PROGRAM, CONNECT6_PROGRAM, GETPEERNAME4_PROGRAM, GETPEERNAME6_PROGRAM, PROGRAM_PREFIX,
    RECVMSG4_PROGRAM, RECVMSG6_PROGRAM, SENDMSG4_PROGRAM, SENDMSG6_PROGRAM, SOCK_OPS_PROGRAM,
};

/// `enum bpf_attach_type` values (include/uapi/linux/bpf.h).
const BPF_CGROUP_SOCK_OPS: u32 = 3;
const BPF_CGROUP_INET4_CONNECT: u32 = 10;
const BPF_CGROUP_INET6_CONNECT: u32 = 11;
const BPF_CGROUP_UDP4_SENDMSG: u32 = 14;
const BPF_CGROUP_UDP6_SENDMSG: u32 = 15;
const BPF_CGROUP_UDP4_RECVMSG: u32 = 19;
const BPF_CGROUP_UDP6_RECVMSG: u32 = 20;
const BPF_CGROUP_INET4_GETPEERNAME: u32 = 29;
const BPF_CGROUP_INET6_GETPEERNAME: u32 = 30;
/// `enum bpf_cmd`.
const BPF_PROG_QUERY: libc::c_long = 16;
/// The kernel's own limit is 64 programs per hook per cgroup (BPF_CGROUP_MAX_PROGS).
const MAX_QUERIED: usize = 64;

/// One cgroup hook and the Pipelock program that goes on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hook {
    /// The Pipelock program (also the link's pin name).
    pub program: &'static str,
    /// The hook as `bpftool cgroup show` names it.
    pub name: &'static str,
    attach_type: u32,
    /// Another redirector on this hook would fight Pipelock's (see [`foreign_programs`]).
    pub exclusive: bool,
}

/// Every hook, in attach order: the programs that only read records (sock_ops, getpeername,
/// recvmsg) go first, so that from the moment connect4/6 start redirecting, every redirected
/// connection also gets its port record. Detaching unpins in name order, which puts
/// connect4/6 first.
pub(super) const HOOKS: [Hook; 9] = [
    hook(SOCK_OPS_PROGRAM, "sock_ops", BPF_CGROUP_SOCK_OPS, false),
    hook(
        GETPEERNAME4_PROGRAM,
        "getpeername4",
        BPF_CGROUP_INET4_GETPEERNAME,
        false,
    ),
    hook(
        GETPEERNAME6_PROGRAM,
        "getpeername6",
        BPF_CGROUP_INET6_GETPEERNAME,
        false,
    ),
    hook(RECVMSG4_PROGRAM, "recvmsg4", BPF_CGROUP_UDP4_RECVMSG, false),
    hook(RECVMSG6_PROGRAM, "recvmsg6", BPF_CGROUP_UDP6_RECVMSG, false),
    hook(SENDMSG4_PROGRAM, "sendmsg4", BPF_CGROUP_UDP4_SENDMSG, false),
    hook(SENDMSG6_PROGRAM, "sendmsg6", BPF_CGROUP_UDP6_SENDMSG, false),
    hook(CONNECT4_PROGRAM, "connect4", BPF_CGROUP_INET4_CONNECT, true),
    hook(CONNECT6_PROGRAM, "connect6", BPF_CGROUP_INET6_CONNECT, true),
];

const fn hook(
    program: &'static str,
    name: &'static str,
    attach_type: u32,
    exclusive: bool,
) -> Hook {
    Hook {
        program,
        name,
        attach_type,
        exclusive,
    }
}

/// A program attached directly to a cgroup's hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AttachedProgram {
    pub id: u32,
    /// The kernel's name for it ("" when it has none).
    pub name: String,
}

impl AttachedProgram {
    pub(super) fn is_pipelock(&self) -> bool {
        self.name.starts_with(PROGRAM_PREFIX)
    }
}

/// `union bpf_attr`'s `query` member (the fields up to `revision`, Linux 6.6).
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// Ids of the programs attached directly to `cgroup`'s `hook` (not inherited ones).
///
/// # Errors
/// The syscall's error: EPERM without privileges, EINVAL on a kernel without cgroup BPF.
pub(super) fn attached_ids(cgroup: BorrowedFd<'_>, hook: &Hook) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; MAX_QUERIED];
    let mut attr = QueryAttr {
        target_fd: u32::try_from(cgroup.as_raw_fd())
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
        attach_type: hook.attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_QUERIED as u32,
        ..QueryAttr::default()
    };
    // SAFETY: bpf(2) with a zero-initialised attribute of the size we pass; the kernel writes
    // at most `prog_cnt` ids into `ids`, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            std::ptr::addr_of_mut!(attr),
            std::mem::size_of::<QueryAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let count = usize::try_from(attr.prog_cnt).unwrap_or(0).min(MAX_QUERIED);
    Ok(ids[..count].to_vec())
}

/// The programs attached directly to every hook of `cgroup`, with their names.
pub(super) fn attached(cgroup: BorrowedFd<'_>) -> io::Result<Vec<(Hook, Vec<AttachedProgram>)>> {
    let mut by_hook = Vec::with_capacity(HOOKS.len());
    for hook in HOOKS {
        by_hook.push((hook, attached_ids(cgroup, &hook)?));
    }
    let names = program_names(by_hook.iter().flat_map(|(_, ids)| ids.iter().copied()));
    Ok(by_hook
        .into_iter()
        .map(|(hook, ids)| {
            let programs = ids
                .into_iter()
                .map(|id| AttachedProgram {
                    id,
                    name: names.get(&id).cloned().unwrap_or_default(),
                })
                .collect();
            (hook, programs)
        })
        .collect())
}

/// Names of the programs with these ids, from the kernel's list of loaded programs.
fn program_names(ids: impl Iterator<Item = u32>) -> HashMap<u32, String> {
    let wanted: Vec<u32> = ids.collect();
    if wanted.is_empty() {
        return HashMap::new();
    }
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|info| wanted.contains(&info.id()))
        .map(|info| {
            (
                info.id(),
                info.name_as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The first program on an exclusive hook (connect4/connect6) that is not Pipelock's.
pub(super) fn foreign_program(
    attached: &[(Hook, Vec<AttachedProgram>)],
) -> Option<(Hook, AttachedProgram)> {
    attached
        .iter()
        .filter(|(hook, _)| hook.exclusive)
        .find_map(|(hook, programs)| {
            programs
                .iter()
                .find(|p| !p.is_pipelock())
                .map(|p| (*hook, p.clone()))
        })
}

/// `bpf(2)` commands used to detach a pinned link.
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;

#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// Detaches the link pinned at `path` from its hook now (`BPF_LINK_DETACH`), even while
/// another process (a running Pipelock) holds it; unpinning alone leaves it attached until
/// every holder closes it, and releases it asynchronously.
///
/// # Errors
/// The pin cannot be opened, or the kernel refused the detach.
pub(super) fn detach_pinned_link(path: &std::path::Path) -> io::Result<()> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut get = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        ..ObjGetAttr::default()
    };
    // SAFETY: bpf(BPF_OBJ_GET) reads the attr we own, whose pathname points at a live C
    // string, for its exact size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            std::ptr::addr_of_mut!(get),
            std::mem::size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    let link = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    let mut detach = LinkDetachAttr {
        link_fd: u32::try_from(link.as_raw_fd())
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
    };
    // SAFETY: bpf(BPF_LINK_DETACH) reads the attr we own, for its exact size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            std::ptr::addr_of_mut!(detach),
            std::mem::size_of::<LinkDetachAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
