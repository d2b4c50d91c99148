//! The `#[map]` attributes and the program functions need literal names; these compile-time
//! checks keep those literals equal to the contract in pipelock-common, which user space uses.

use pipelock_common::{
    ALLOW_RULES_MAP, CONNECT4_PROGRAM, CONNECT6_PROGRAM, DENIED_EVENTS_MAP, GETPEERNAME4_PROGRAM,
    GETPEERNAME6_PROGRAM, ORIG_BY_COOKIE_MAP, ORIG_BY_PORT_MAP, RECVMSG4_PROGRAM, RECVMSG6_PROGRAM,
    SENDMSG4_PROGRAM, SENDMSG6_PROGRAM, SETTINGS_MAP, SOCK_OPS_PROGRAM, STATS_MAP,
};

const _: () = assert!(same_name(SETTINGS_MAP, "SETTINGS"));
const _: () = assert!(same_name(ORIG_BY_COOKIE_MAP, "ORIG_BY_COOKIE"));
const _: () = assert!(same_name(ORIG_BY_PORT_MAP, "ORIG_BY_PORT"));
const _: () = assert!(same_name(ALLOW_RULES_MAP, "ALLOW_RULES"));
const _: () = assert!(same_name(DENIED_EVENTS_MAP, "DENIED_EVENTS"));
const _: () = assert!(same_name(STATS_MAP, "STATS"));
// Not named like their ELF sections (`connect4`, `sockops`, …): a function named like its
// section makes bpf-linker fail ("symbol already defined").
const _: () = assert!(same_name(CONNECT4_PROGRAM, "pipelock_conn4"));
const _: () = assert!(same_name(CONNECT6_PROGRAM, "pipelock_conn6"));
const _: () = assert!(same_name(SOCK_OPS_PROGRAM, "pipelock_sk_ops"));
const _: () = assert!(same_name(SENDMSG4_PROGRAM, "pipelock_send4"));
const _: () = assert!(same_name(SENDMSG6_PROGRAM, "pipelock_send6"));
const _: () = assert!(same_name(RECVMSG4_PROGRAM, "pipelock_recv4"));
const _: () = assert!(same_name(RECVMSG6_PROGRAM, "pipelock_recv6"));
const _: () = assert!(same_name(GETPEERNAME4_PROGRAM, "pipelock_peer4"));
const _: () = assert!(same_name(GETPEERNAME6_PROGRAM, "pipelock_peer6"));

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
