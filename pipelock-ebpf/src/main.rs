//! Pipelock's kernel programs.
//!
//! `cgroup/connect4` and `cgroup/connect6` run on every `connect()` made by a process in the
//! cgroup they are attached to (and its descendants). Today they count connects per cgroup and
//! log each one; they always allow the connect. The redirect to Pipelock's transparent listener
//! builds on these hooks.
//!
//! The crate is built for `bpfel-unknown-none` (by `pipelock/build.rs`). It also compiles for
//! the host as an empty program, only so that `cargo clippy -p pipelock-ebpf` can lint it with
//! the stable toolchain.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::bindings::BPF_NOEXIST;
use aya_ebpf::helpers::bpf_get_current_cgroup_id;
use aya_ebpf::macros::{cgroup_sock_addr, map};
use aya_ebpf::maps::PerCpuHashMap;
use aya_ebpf::programs::SockAddrContext;
use aya_log_ebpf::info;
use pipelock_common::{
    ConnectCount, CONNECT4_PROGRAM, CONNECT6_PROGRAM, CONNECT_COUNTS_MAP,
    CONNECT_COUNTS_MAX_ENTRIES,
};

/// Allow the connect (cgroup/connect* programs return 1 to allow, 0 to deny).
const ALLOW: i32 = 1;

#[map(name = "CONNECT_COUNTS")]
static CONNECT_COUNTS: PerCpuHashMap<u64, ConnectCount> =
    PerCpuHashMap::with_max_entries(CONNECT_COUNTS_MAX_ENTRIES, 0);

// The macros below need literal names (the map's `name`, the programs' function names); these
// checks keep those literals equal to the contract in pipelock-common, which user space uses.
const _: () = assert!(same_name(CONNECT_COUNTS_MAP, "CONNECT_COUNTS"));
const _: () = assert!(same_name(CONNECT4_PROGRAM, "pipelock_connect4"));
const _: () = assert!(same_name(CONNECT6_PROGRAM, "pipelock_connect6"));

const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

// Not named `connect4`: a function named like its ELF section makes bpf-linker fail
// ("symbol already defined").
#[cgroup_sock_addr(connect4)]
pub fn pipelock_connect4(ctx: SockAddrContext) -> i32 {
    let cgroup = count(Family::V4);
    // SAFETY: the kernel hands the program a valid bpf_sock_addr for its whole run.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    info!(
        &ctx,
        "connect4 cgroup={} dst={:i}:{}",
        cgroup,
        u32::from_be(ip),
        port_from_user_port(port)
    );
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn pipelock_connect6(ctx: SockAddrContext) -> i32 {
    let cgroup = count(Family::V6);
    // SAFETY: as in connect4.
    let (words, port) = unsafe { ((*ctx.sock_addr).user_ip6, (*ctx.sock_addr).user_port) };
    let mut ip = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let bytes = words[i].to_ne_bytes(); // stored in network order
        ip[i * 4] = bytes[0];
        ip[i * 4 + 1] = bytes[1];
        ip[i * 4 + 2] = bytes[2];
        ip[i * 4 + 3] = bytes[3];
        i += 1;
    }
    info!(
        &ctx,
        "connect6 cgroup={} dst=[{:i}]:{}",
        cgroup,
        ip,
        port_from_user_port(port)
    );
    ALLOW
}

/// `user_port` holds a network-order 16-bit port in a u32.
fn port_from_user_port(user_port: u32) -> u16 {
    u16::from_be(user_port as u16)
}

/// Adds one connect of `family` to the current cgroup's counter and returns the cgroup id.
///
/// The map is per-CPU, so the increment needs no atomics (the BPF target has no atomic
/// read-modify-write in `core`): each CPU owns its own slot, and user space sums them.
fn count(family: Family) -> u64 {
    // SAFETY: a helper with no arguments, available to cgroup programs.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    if CONNECT_COUNTS.get_ptr_mut(cgroup).is_none() {
        let _ = CONNECT_COUNTS.insert(cgroup, ConnectCount::default(), u64::from(BPF_NOEXIST));
    }
    if let Some(entry) = CONNECT_COUNTS.get_ptr_mut(cgroup) {
        // SAFETY: the pointer comes from the map, points at this CPU's slot, and stays valid
        // for this program run; the program cannot be preempted by itself on this CPU.
        unsafe {
            match family {
                Family::V4 => (*entry).ipv4 = (*entry).ipv4.wrapping_add(1),
                Family::V6 => (*entry).ipv6 = (*entry).ipv6.wrapping_add(1),
            }
        }
    }
    cgroup
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
