//! The contract between Pipelock's kernel programs (`pipelock-ebpf`) and its user space.
//!
//! Every map name, program name, map key and value that crosses the kernel boundary is declared
//! here once, `#[repr(C)]` with explicit reserved bytes (no compiler padding), so both sides
//! agree on the layout. The crate is `no_std`; the `user` feature adds the `aya::Pod` impls user
//! space needs to read and write the maps.
//!
//! Byte orders: addresses are kept as the kernel hands them to cgroup programs (network order,
//! as raw bytes in memory); ports are host order everywhere in this contract, except inside
//! [`AllowKey`], whose port is big-endian because an LPM trie compares keys bit by bit from the
//! first byte.
#![no_std]

// ---------------------------------------------------------------------------------------------
// Programs. The kernel keeps 15 bytes of a program's name; every name fits, so the names seen
// through `BPF_PROG_QUERY` / `bpftool` are exactly these, and an attachment is recognised as
// Pipelock's by its name.

/// Prefix shared by every Pipelock program name.
pub const PROGRAM_PREFIX: &str = "pipelock_";
/// `cgroup/connect4`: TCP redirect, UDP/53 redirect, UDP policy, kill switch (IPv4).
pub const CONNECT4_PROGRAM: &str = "pipelock_conn4";
/// `cgroup/connect6`: the same for IPv6.
pub const CONNECT6_PROGRAM: &str = "pipelock_conn6";
/// `sockops`: copies a redirected socket's record to [`ORIG_BY_PORT_MAP`] on
/// `BPF_SOCK_OPS_TCP_CONNECT_CB`.
pub const SOCK_OPS_PROGRAM: &str = "pipelock_sk_ops";
/// `cgroup/sendmsg4`: unconnected UDP sends (DNS redirect, UDP policy, kill switch).
pub const SENDMSG4_PROGRAM: &str = "pipelock_send4";
/// `cgroup/sendmsg6`.
pub const SENDMSG6_PROGRAM: &str = "pipelock_send6";
/// `cgroup/recvmsg4`: a redirected DNS reply appears to come from the original resolver.
pub const RECVMSG4_PROGRAM: &str = "pipelock_recv4";
/// `cgroup/recvmsg6`.
pub const RECVMSG6_PROGRAM: &str = "pipelock_recv6";
/// `cgroup/getpeername4`: a redirected socket's peer is the address the application dialled.
pub const GETPEERNAME4_PROGRAM: &str = "pipelock_peer4";
/// `cgroup/getpeername6`.
pub const GETPEERNAME6_PROGRAM: &str = "pipelock_peer6";

/// Every program, in attach order.
pub const PROGRAMS: [&str; 9] = [
    CONNECT4_PROGRAM,
    CONNECT6_PROGRAM,
    SOCK_OPS_PROGRAM,
    SENDMSG4_PROGRAM,
    SENDMSG6_PROGRAM,
    RECVMSG4_PROGRAM,
    RECVMSG6_PROGRAM,
    GETPEERNAME4_PROGRAM,
    GETPEERNAME6_PROGRAM,
];

// ---------------------------------------------------------------------------------------------
// Maps. All of them are pinned by name (under `<pin root>/maps/`), so a restarted Pipelock
// re-adopts them, and programs behind links pinned by an earlier process keep sharing them.

/// One [`Settings`] entry (an `Array` of length 1, index 0).
pub const SETTINGS_MAP: &str = "SETTINGS";
/// Socket cookie (`u64`) → [`OriginalDestination`], written by connect4/6 and sendmsg4/6; read
/// by sock_ops, recvmsg4/6 and getpeername4/6. LRU: entries of UDP sockets (which have no
/// close callback) age out; TCP entries are also deleted when the socket closes.
pub const ORIG_BY_COOKIE_MAP: &str = "ORIG_BY_COOKIE";
/// Capacity of [`ORIG_BY_COOKIE_MAP`]: redirected sockets alive at once (about 5 MiB).
pub const ORIG_BY_COOKIE_MAX_ENTRIES: u32 = 65_536;
/// [`PortKey`] → [`OriginalDestination`], written by sock_ops when a redirected TCP socket
/// sends its SYN; user space deletes an entry after reading it. LRU, so entries nobody reads
/// (the listener was down) cannot fill it; sock_ops also deletes the entry of a socket that
/// closes before its connection is established.
pub const ORIG_BY_PORT_MAP: &str = "ORIG_BY_PORT";
/// Capacity of [`ORIG_BY_PORT_MAP`]: connections accepted but not yet looked up.
pub const ORIG_BY_PORT_MAX_ENTRIES: u32 = 65_536;
/// LPM trie of allow rules: [`AllowKey`] (with its prefix length) → `u32` (1).
pub const ALLOW_RULES_MAP: &str = "ALLOW_RULES";
/// Capacity of [`ALLOW_RULES_MAP`].
pub const ALLOW_RULES_MAX_ENTRIES: u32 = 1024;
/// Ring buffer of [`DeniedEventRecord`]s.
pub const DENIED_EVENTS_MAP: &str = "DENIED_EVENTS";
/// Size of [`DENIED_EVENTS_MAP`] in bytes (a power of two, a multiple of the page size):
/// room for about 5,000 events (40 bytes + an 8-byte header each) between two reads.
pub const DENIED_EVENTS_BYTES: u32 = 256 * 1024;
/// Per-CPU `u64` counters, indexed by the `STAT_*` constants.
pub const STATS_MAP: &str = "STATS";

/// Every pinned map.
pub const MAPS: [&str; 6] = [
    SETTINGS_MAP,
    ORIG_BY_COOKIE_MAP,
    ORIG_BY_PORT_MAP,
    ALLOW_RULES_MAP,
    DENIED_EVENTS_MAP,
    STATS_MAP,
];

/// TCP connects rewritten to the transparent listener.
pub const STAT_REDIRECTED_TCP: u32 = 0;
/// UDP/53 connects and sends rewritten to the DNS listener.
pub const STAT_REDIRECTED_DNS: u32 = 1;
/// Connects and sends let through by an allow rule.
pub const STAT_ALLOWED_DIRECT: u32 = 2;
/// Connects and sends refused by the kill switch.
pub const STAT_DENIED_KILL_SWITCH: u32 = 3;
/// UDP (other than DNS) refused for want of an allow rule.
pub const STAT_DENIED_UDP: u32 = 4;
/// Connects of other protocols (neither TCP nor UDP) refused.
pub const STAT_DENIED_PROTOCOL: u32 = 5;
/// Sockets carrying Pipelock's mark, left alone.
pub const STAT_OWN_TRAFFIC: u32 = 6;
/// Redirects whose original destination could not be recorded (the listener will find no
/// record and close the connection: fail closed).
pub const STAT_RECORD_FAILED: u32 = 7;
/// Denied events dropped because the ring buffer was full.
pub const STAT_EVENTS_LOST: u32 = 8;
/// Length of [`STATS_MAP`].
pub const STATS_LEN: u32 = 9;

// ---------------------------------------------------------------------------------------------
// Values.

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;

/// `Settings::kill_switch` / `Settings::debug_log` value for "on".
pub const ON: u32 = 1;

/// What the programs need to know from user space; written at load and on every change.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Port of the transparent TCP listener on 127.0.0.1 and [::1] (host order).
    pub transparent_port: u16,
    /// Port of the DNS listener on 127.0.0.1 and [::1] (host order).
    pub dns_port: u16,
    /// `SO_MARK` of Pipelock's own sockets; 0 disables the exemption.
    pub mark: u32,
    /// [`ON`] while the kill switch is active.
    pub kill_switch: u32,
    /// [`ON`] to emit aya-log debug records.
    pub debug_log: u32,
}

/// Where a redirected socket meant to go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginalDestination {
    /// The address as the kernel stores it (network order bytes); IPv4 uses word 0 only.
    pub addr: [u32; 4],
    /// Port, host order.
    pub port: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub protocol: u8,
    pub reserved: [u8; 3],
}

/// Key of [`ORIG_BY_PORT_MAP`]: the client's side of the redirected connection as the
/// transparent listener sees it in `accept()`'s peer address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortKey {
    /// [`AF_INET`] (the connection came in on 127.0.0.1) or [`AF_INET6`] ([::1]).
    pub family: u16,
    /// The client's local port, host order.
    pub port: u16,
}

/// Data of an allow rule's LPM key. The trie matches the first `prefix_len` bits; the fixed
/// fields take [`ALLOW_KEY_FIXED_BITS`], so a rule for `addr/prefix` has
/// `prefix_len = ALLOW_KEY_FIXED_BITS + prefix`. A rule with port 0 matches any port: the
/// programs look up the real port, then port 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowKey {
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub protocol: u8,
    /// [`AF_INET`] or [`AF_INET6`] (as a `u8`).
    pub family: u8,
    /// Port, big-endian bytes (0 = any port).
    pub port: [u8; 2],
    /// Address bytes in network order; IPv4 uses the first 4.
    pub addr: [u8; 16],
}

/// Bits of [`AllowKey`] before the address.
pub const ALLOW_KEY_FIXED_BITS: u32 = 32;

/// Why a connect or send was refused.
pub const DENY_KILL_SWITCH: u8 = 1;
/// UDP to a port other than 53, without an allow rule.
pub const DENY_UDP: u8 = 2;
/// A protocol other than TCP and UDP.
pub const DENY_PROTOCOL: u8 = 3;

/// One refused connect or send, as written to [`DENIED_EVENTS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeniedEventRecord {
    /// cgroup v2 id of the process (the inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// Destination address (network order bytes); IPv4 uses word 0 only.
    pub addr: [u32; 4],
    /// Thread group id (the process id user space sees).
    pub pid: u32,
    /// Destination port, host order.
    pub port: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// One of the `DENY_*` codes.
    pub reason: u8,
    pub reserved: [u8; 6],
}

// The layouts are part of the contract: these fail the build if a field change introduces
// padding or moves a field.
const _: () = assert!(core::mem::size_of::<Settings>() == 16);
const _: () = assert!(core::mem::size_of::<OriginalDestination>() == 24);
const _: () = assert!(core::mem::size_of::<PortKey>() == 4);
const _: () = assert!(core::mem::size_of::<AllowKey>() == 20);
const _: () = assert!(core::mem::size_of::<DeniedEventRecord>() == 40);

// SAFETY (all impls below): the types are `#[repr(C)]`, made only of integers and integer
// arrays, have no implicit padding (checked above), and every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Settings {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for OriginalDestination {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PortKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for AllowKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DeniedEventRecord {}
