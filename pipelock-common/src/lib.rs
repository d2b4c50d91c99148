//! The contract between Pipelock's kernel programs (`pipelock-ebpf`) and its user space.
//!
//! Every map name, program name, map key and value that crosses the kernel boundary is declared
//! here once, `#[repr(C)]`, so both sides agree on the layout. The crate is `no_std`; the
//! `user` feature adds the `aya::Pod` impls user space needs to read the maps.
#![no_std]

/// Name of the per-CPU map counting connects per cgroup: key = cgroup v2 id (`u64`), value =
/// [`ConnectCount`].
pub const CONNECT_COUNTS_MAP: &str = "CONNECT_COUNTS";

/// Capacity of [`CONNECT_COUNTS_MAP`]: one entry per cgroup whose processes connected.
pub const CONNECT_COUNTS_MAX_ENTRIES: u32 = 4096;

/// Name of the `cgroup/connect4` program.
pub const CONNECT4_PROGRAM: &str = "pipelock_connect4";

/// Name of the `cgroup/connect6` program.
pub const CONNECT6_PROGRAM: &str = "pipelock_connect6";

/// Connects seen from one cgroup, by address family.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectCount {
    /// `connect()` calls on AF_INET sockets (TCP and UDP).
    pub ipv4: u64,
    /// `connect()` calls on AF_INET6 sockets (TCP and UDP).
    pub ipv6: u64,
}

impl ConnectCount {
    /// All connects, whatever the family.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.ipv4.saturating_add(self.ipv6)
    }
}

// SAFETY: `ConnectCount` is `#[repr(C)]`, made only of `u64`s, has no padding, and every bit
// pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ConnectCount {}
