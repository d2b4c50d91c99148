//! Pipelock's kernel programs: transparent interception of a cgroup's outbound traffic.
//!
//! Attached to an application's cgroup (and so to its descendants), they:
//! - rewrite every TCP `connect()` to Pipelock's transparent listener (`127.0.0.1` / `[::1]`,
//!   `transparent_port`), recording the original destination by socket cookie
//!   (`cgroup/connect4|6`); `sock_ops` copies that record under the client's local port when
//!   the SYN leaves, which is the key the listener has in `accept()`'s peer address;
//! - rewrite UDP to port 53 (connected: `connect4|6`; unconnected: `sendmsg4|6`) to the DNS
//!   listener, and make the replies appear to come from the original resolver (`recvmsg4|6`);
//!   refuse other UDP (EPERM) unless an allow rule matches;
//! - let destinations matching an allow rule (LPM trie) connect directly;
//! - refuse everything while the kill switch is on, and report each refusal in a ring buffer;
//! - show the application the address it dialled (`getpeername4|6`);
//! - never touch a socket carrying Pipelock's `SO_MARK`, so Pipelock's own upstream
//!   connections pass even when it runs inside the attached cgroup.
//!
//! Settings (ports, mark, kill switch, debug log) live in a map, not in globals, so a
//! restarted Pipelock re-adopting pinned links can change them for programs it did not load.
//!
//! The crate is built for `bpfel-unknown-none` (by `pipelock/build.rs`). It also compiles for
//! the host as an empty program, only so that `cargo clippy -p pipelock-ebpf` can lint it with
//! the stable toolchain.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod names;

use aya_ebpf::bindings::{
    bpf_sock_addr, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
    BPF_TCP_CLOSE, BPF_TCP_SYN_SENT,
};
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_socket_cookie,
};
use aya_ebpf::macros::{cgroup_sock_addr, map, sock_ops};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::{SockAddrContext, SockOpsContext};
use aya_log_ebpf::debug;
use pipelock_common::{
    AllowKey, DeniedEventRecord, OriginalDestination, PortKey, Settings, AF_INET, AF_INET6,
    ALLOW_KEY_FIXED_BITS, ALLOW_RULES_MAX_ENTRIES, DENIED_EVENTS_BYTES, DENY_KILL_SWITCH,
    DENY_PROTOCOL, DENY_UDP, IPPROTO_TCP, IPPROTO_UDP, ON, ORIG_BY_COOKIE_MAX_ENTRIES,
    ORIG_BY_PORT_MAX_ENTRIES, STATS_LEN, STAT_ALLOWED_DIRECT, STAT_DENIED_KILL_SWITCH,
    STAT_DENIED_PROTOCOL, STAT_DENIED_UDP, STAT_EVENTS_LOST, STAT_OWN_TRAFFIC, STAT_RECORD_FAILED,
    STAT_REDIRECTED_DNS, STAT_REDIRECTED_TCP,
};

/// cgroup/connect* and sendmsg* programs return 1 to allow, 0 to refuse (the caller gets
/// EPERM). recvmsg* and getpeername* must return 1.
const ALLOW: i32 = 1;
const DENY: i32 = 0;
/// sock_ops programs return 1.
const SOCK_OPS_DONE: u32 = 1;
/// The DNS port applications dial.
const DNS_PORT: u16 = 53;

#[map(name = "SETTINGS")]
static SETTINGS: Array<Settings> = Array::pinned(1, 0);

#[map(name = "ORIG_BY_COOKIE")]
static ORIG_BY_COOKIE: LruHashMap<u64, OriginalDestination> =
    LruHashMap::pinned(ORIG_BY_COOKIE_MAX_ENTRIES, 0);

#[map(name = "ORIG_BY_PORT")]
static ORIG_BY_PORT: LruHashMap<PortKey, OriginalDestination> =
    LruHashMap::pinned(ORIG_BY_PORT_MAX_ENTRIES, 0);

#[map(name = "ALLOW_RULES")]
static ALLOW_RULES: LpmTrie<AllowKey, u32> = LpmTrie::pinned(ALLOW_RULES_MAX_ENTRIES, 0);

#[map(name = "DENIED_EVENTS")]
static DENIED_EVENTS: RingBuf = RingBuf::pinned(DENIED_EVENTS_BYTES, 0);

#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(STATS_LEN, 0);

/// A destination as the programs handle it: the kernel's address words (network order) and a
/// host-order port.
#[derive(Clone, Copy)]
struct Destination {
    family: u16,
    addr: [u32; 4],
    port: u16,
}

impl Destination {
    /// The destination in a `bpf_sock_addr` (`user_*` fields).
    ///
    /// # Safety
    /// `sa` must be the context the kernel handed to the program.
    #[inline(always)]
    unsafe fn from_user(sa: *const bpf_sock_addr, family: u16) -> Self {
        let addr = if family == AF_INET {
            [(*sa).user_ip4, 0, 0, 0]
        } else {
            (*sa).user_ip6
        };
        Self {
            family,
            addr,
            // user_port: a network-order 16-bit port in a u32.
            port: u16::from_be((*sa).user_port as u16),
        }
    }

    /// Rewrites the `bpf_sock_addr`'s `user_*` fields to this destination (whole-u32 stores,
    /// as the verifier requires).
    ///
    /// # Safety
    /// `sa` must be the context the kernel handed to the program.
    #[inline(always)]
    unsafe fn write_user(&self, sa: *mut bpf_sock_addr) {
        // The verifier refuses stores through a context pointer with an added offset
        // ("dereference of modified ctx ptr"), and LLVM likes to reuse `ctx + offset` computed
        // for an earlier read. Reloading the pointer through a volatile read gives LLVM a value
        // it cannot relate to the earlier one, so each store gets its own `ctx` base and
        // immediate offset, which the verifier accepts.
        let sa = core::ptr::read_volatile(&sa);
        if self.family == AF_INET {
            (*sa).user_ip4 = self.addr[0];
        } else {
            (*sa).user_ip6[0] = self.addr[0];
            (*sa).user_ip6[1] = self.addr[1];
            (*sa).user_ip6[2] = self.addr[2];
            (*sa).user_ip6[3] = self.addr[3];
        }
        (*sa).user_port = u32::from(self.port.to_be());
    }

    /// Pipelock's listener at `port` on the loopback address of `family`.
    #[inline(always)]
    fn loopback(family: u16, port: u16) -> Self {
        let addr = if family == AF_INET {
            [0x7f00_0001u32.to_be(), 0, 0, 0]
        } else {
            [0, 0, 0, 1u32.to_be()]
        };
        Self { family, addr, port }
    }

    /// `::ffff:a.b.c.d` (a dual-stack socket dialling IPv4).
    #[inline(always)]
    fn is_v4_mapped(&self) -> bool {
        self.family == AF_INET6
            && self.addr[0] == 0
            && self.addr[1] == 0
            && self.addr[2] == 0x0000_ffffu32.to_be()
    }

    /// The IPv4 address word, for IPv4 and IPv4-mapped destinations.
    #[inline(always)]
    fn ipv4_word(&self) -> Option<u32> {
        if self.family == AF_INET {
            Some(self.addr[0])
        } else if self.is_v4_mapped() {
            Some(self.addr[3])
        } else {
            None
        }
    }

    /// 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104.
    #[inline(always)]
    fn is_loopback(&self) -> bool {
        match self.ipv4_word() {
            Some(word) => u32::from_be(word) >> 24 == 127,
            None => {
                self.addr[0] == 0
                    && self.addr[1] == 0
                    && self.addr[2] == 0
                    && self.addr[3] == 1u32.to_be()
            }
        }
    }

    fn record(&self, protocol: u8) -> OriginalDestination {
        OriginalDestination {
            addr: self.addr,
            port: self.port,
            family: self.family,
            protocol,
            reserved: [0; 3],
        }
    }
}

/// The settings, copied out of the map. Array lookups of index 0 of a length-1 array cannot
/// fail, but the verifier needs the check; all-zero settings (never the case once user space
/// has written them) would redirect to port 0, which refuses: fail closed.
#[inline(always)]
fn settings() -> Settings {
    match SETTINGS.get(0) {
        Some(settings) => *settings,
        None => Settings::default(),
    }
}

#[inline(always)]
fn count(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: the pointer is this CPU's slot of the per-CPU array, valid for this run; a
        // program is not preempted by itself on one CPU, so no atomics are needed.
        unsafe { *counter = (*counter).wrapping_add(1) };
    }
}

/// True for sockets carrying Pipelock's mark (its own upstream and DNS sockets).
///
/// # Safety
/// `sa` must be the context the kernel handed to the program.
#[inline(always)]
unsafe fn own_socket(sa: *const bpf_sock_addr, mark: u32) -> bool {
    if mark == 0 {
        return false;
    }
    let sk = (*sa).__bindgen_anon_1.sk;
    !sk.is_null() && (*sk).mark == mark
}

/// True when an allow rule covers (`protocol`, `destination`): a rule for its port, or a rule
/// for any port (port 0). IPv4-mapped IPv6 destinations are matched against IPv4 rules.
#[inline(always)]
fn allowed(protocol: u8, destination: &Destination) -> bool {
    let mut data = AllowKey {
        protocol,
        family: 0,
        port: destination.port.to_be_bytes(),
        addr: [0; 16],
    };
    let address_bits = if let Some(word) = destination.ipv4_word() {
        data.family = AF_INET as u8;
        let bytes = word.to_ne_bytes();
        data.addr[0] = bytes[0];
        data.addr[1] = bytes[1];
        data.addr[2] = bytes[2];
        data.addr[3] = bytes[3];
        32
    } else {
        data.family = AF_INET6 as u8;
        let mut i = 0;
        while i < 4 {
            let bytes = destination.addr[i].to_ne_bytes();
            data.addr[i * 4] = bytes[0];
            data.addr[i * 4 + 1] = bytes[1];
            data.addr[i * 4 + 2] = bytes[2];
            data.addr[i * 4 + 3] = bytes[3];
            i += 1;
        }
        128
    };
    let key = Key::new(ALLOW_KEY_FIXED_BITS + address_bits, data);
    if ALLOW_RULES.get(&key).is_some() {
        return true;
    }
    data.port = [0, 0];
    ALLOW_RULES
        .get(Key::new(ALLOW_KEY_FIXED_BITS + address_bits, data))
        .is_some()
}

/// Counts a refusal and reports it in the ring buffer; returns [`DENY`].
#[inline(always)]
fn deny(reason: u8, protocol: u8, destination: &Destination) -> i32 {
    count(match reason {
        DENY_KILL_SWITCH => STAT_DENIED_KILL_SWITCH,
        DENY_UDP => STAT_DENIED_UDP,
        _ => STAT_DENIED_PROTOCOL,
    });
    match DENIED_EVENTS.reserve::<DeniedEventRecord>(0) {
        Some(mut entry) => {
            // SAFETY: helpers with no arguments, available to cgroup sock_addr programs.
            let (pid_tgid, cgroup_id) =
                unsafe { (bpf_get_current_pid_tgid(), bpf_get_current_cgroup_id()) };
            entry.write(DeniedEventRecord {
                cgroup_id,
                addr: destination.addr,
                pid: (pid_tgid >> 32) as u32,
                port: destination.port,
                family: destination.family,
                protocol,
                reason,
                reserved: [0; 6],
            });
            entry.submit(0);
        }
        None => count(STAT_EVENTS_LOST),
    }
    DENY
}

/// Records `destination` for the socket and rewrites the connect/send to Pipelock's listener
/// at `port`.
///
/// # Safety
/// `ctx` must be the context the kernel handed to the program.
#[inline(always)]
unsafe fn redirect(ctx: &SockAddrContext, destination: &Destination, protocol: u8, port: u16) {
    let cookie = bpf_get_socket_cookie(ctx.sock_addr.cast());
    if ORIG_BY_COOKIE
        .insert(cookie, destination.record(protocol), 0)
        .is_err()
    {
        count(STAT_RECORD_FAILED);
    }
    Destination::loopback(destination.family, port).write_user(ctx.sock_addr);
}

/// connect4 / connect6.
///
/// # Safety
/// `ctx` must be the context the kernel handed to the program.
#[inline(always)]
unsafe fn on_connect(ctx: &SockAddrContext, family: u16) -> i32 {
    let settings = settings();
    let sa = ctx.sock_addr;
    if own_socket(sa, settings.mark) {
        count(STAT_OWN_TRAFFIC);
        return ALLOW;
    }
    let destination = Destination::from_user(sa, family);
    let protocol = (*sa).protocol;
    let protocol = if protocol == u32::from(IPPROTO_TCP) {
        IPPROTO_TCP
    } else if protocol == u32::from(IPPROTO_UDP) {
        IPPROTO_UDP
    } else {
        // A protocol number that fits no u8 cannot be TCP or UDP; report it as 0xff.
        let reported = if protocol > 0xff {
            0xff
        } else {
            protocol as u8
        };
        if settings.kill_switch == ON {
            return deny(DENY_KILL_SWITCH, reported, &destination);
        }
        return deny(DENY_PROTOCOL, reported, &destination);
    };
    if settings.kill_switch == ON {
        return deny(DENY_KILL_SWITCH, protocol, &destination);
    }
    if protocol == IPPROTO_TCP {
        // Already aimed at the listener (by Pipelock's own tests, or a second program run).
        if destination.is_loopback() && destination.port == settings.transparent_port {
            return ALLOW;
        }
        if allowed(IPPROTO_TCP, &destination) {
            count(STAT_ALLOWED_DIRECT);
            return ALLOW;
        }
        redirect(ctx, &destination, IPPROTO_TCP, settings.transparent_port);
        count(STAT_REDIRECTED_TCP);
        if settings.debug_log == ON {
            debug!(
                ctx,
                "redirect tcp family={} port={}", family, destination.port
            );
        }
        return ALLOW;
    }
    on_udp(ctx, &settings, &destination)
}

/// UDP in connect4/6 and sendmsg4/6: DNS to the DNS listener, allow rules direct, the rest
/// refused.
///
/// # Safety
/// `ctx` must be the context the kernel handed to the program.
#[inline(always)]
unsafe fn on_udp(ctx: &SockAddrContext, settings: &Settings, destination: &Destination) -> i32 {
    if destination.is_loopback() && destination.port == settings.dns_port {
        return ALLOW;
    }
    if allowed(IPPROTO_UDP, destination) {
        count(STAT_ALLOWED_DIRECT);
        return ALLOW;
    }
    if destination.port == DNS_PORT {
        redirect(ctx, destination, IPPROTO_UDP, settings.dns_port);
        count(STAT_REDIRECTED_DNS);
        return ALLOW;
    }
    if settings.debug_log == ON {
        debug!(
            ctx,
            "deny udp family={} port={}", destination.family, destination.port
        );
    }
    deny(DENY_UDP, IPPROTO_UDP, destination)
}

/// sendmsg4 / sendmsg6 (only unconnected sends reach these hooks).
///
/// # Safety
/// `ctx` must be the context the kernel handed to the program.
#[inline(always)]
unsafe fn on_sendmsg(ctx: &SockAddrContext, family: u16) -> i32 {
    let settings = settings();
    let sa = ctx.sock_addr;
    if own_socket(sa, settings.mark) {
        count(STAT_OWN_TRAFFIC);
        return ALLOW;
    }
    let destination = Destination::from_user(sa, family);
    if settings.kill_switch == ON {
        return deny(DENY_KILL_SWITCH, IPPROTO_UDP, &destination);
    }
    on_udp(ctx, &settings, &destination)
}

/// recvmsg4/6 (the datagram's source) and getpeername4/6 (the socket's peer): a socket that
/// was redirected sees the original address instead of Pipelock's listener.
///
/// # Safety
/// `ctx` must be the context the kernel handed to the program.
#[inline(always)]
unsafe fn restore(ctx: &SockAddrContext, family: u16) -> i32 {
    let sa = ctx.sock_addr;
    let shown = Destination::from_user(sa, family);
    if !shown.is_loopback() {
        return ALLOW;
    }
    let settings = settings();
    if shown.port != settings.transparent_port && shown.port != settings.dns_port {
        return ALLOW;
    }
    let cookie = bpf_get_socket_cookie(sa.cast());
    if let Some(original) = ORIG_BY_COOKIE.get(cookie) {
        // A socket's family cannot change, so the record has the same family.
        if original.family == family {
            Destination {
                family,
                addr: original.addr,
                port: original.port,
            }
            .write_user(sa);
        }
    }
    ALLOW
}

#[cgroup_sock_addr(connect4)]
pub fn pipelock_conn4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel hands the program a valid bpf_sock_addr for its whole run.
    unsafe { on_connect(&ctx, AF_INET) }
}

#[cgroup_sock_addr(connect6)]
pub fn pipelock_conn6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4.
    unsafe { on_connect(&ctx, AF_INET6) }
}

#[cgroup_sock_addr(sendmsg4)]
pub fn pipelock_send4(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4.
    unsafe { on_sendmsg(&ctx, AF_INET) }
}

#[cgroup_sock_addr(sendmsg6)]
pub fn pipelock_send6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4.
    unsafe { on_sendmsg(&ctx, AF_INET6) }
}

#[cgroup_sock_addr(recvmsg4)]
pub fn pipelock_recv4(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4.
    unsafe { restore(&ctx, AF_INET) }
}

#[cgroup_sock_addr(recvmsg6)]
pub fn pipelock_recv6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4.
    unsafe { restore(&ctx, AF_INET6) }
}

#[cgroup_sock_addr(getpeername4)]
pub fn pipelock_peer4(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4.
    unsafe { restore(&ctx, AF_INET) }
}

#[cgroup_sock_addr(getpeername6)]
pub fn pipelock_peer6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4.
    unsafe { restore(&ctx, AF_INET6) }
}

/// On `BPF_SOCK_OPS_TCP_CONNECT_CB` (the local port is chosen, the SYN not yet sent, so the
/// record exists before the listener's `accept()` returns) copies a redirected socket's
/// record under (family, local port). On close, deletes the cookie record, and the port record
/// too when the connection never got established (nobody will look it up).
#[sock_ops]
pub fn pipelock_sk_ops(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_STATE_CB {
        return SOCK_OPS_DONE;
    }
    // SAFETY: the helper takes the sock_ops context the kernel handed us.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    let key = PortKey {
        family: ctx.family() as u16,
        port: ctx.local_port() as u16,
    };
    if op == BPF_SOCK_OPS_TCP_CONNECT_CB {
        // SAFETY: a map lookup; the value is copied out at once.
        match unsafe { ORIG_BY_COOKIE.get(cookie) } {
            Some(original) => {
                let original = *original;
                if ORIG_BY_PORT.insert(key, original, 0).is_err() {
                    count(STAT_RECORD_FAILED);
                }
                let _ = ctx.set_cb_flags(BPF_SOCK_OPS_STATE_CB_FLAG as i32);
            }
            // Not redirected (a marked socket, an allowed destination, or a connect aimed at
            // the listener itself): a stale record for this port must not answer for it.
            None => {
                let _ = ORIG_BY_PORT.remove(key);
            }
        }
        return SOCK_OPS_DONE;
    }
    // BPF_SOCK_OPS_STATE_CB: args[0] = old state, args[1] = new state.
    if ctx.arg(1) == BPF_TCP_CLOSE {
        let _ = ORIG_BY_COOKIE.remove(cookie);
        if ctx.arg(0) == BPF_TCP_SYN_SENT {
            let _ = ORIG_BY_PORT.remove(key);
        }
    }
    SOCK_OPS_DONE
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
