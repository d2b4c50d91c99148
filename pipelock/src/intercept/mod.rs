//! Transparent interception: Pipelock's eBPF programs, loaded into the kernel and attached to
//! the cgroup of the application it guards.
//!
//! The object is built from `pipelock-ebpf` by `build.rs` and embedded in the binary, so a
//! deployed `pipelock` needs nothing else on disk. `object` holds the embedded bytes, `cgroup`
//! checks and identifies cgroup v2 directories, `ebpf_log` carries the programs' aya-log
//! records into user space, and `connect_counter` loads, attaches and reads the
//! connect4/connect6 programs.

mod cgroup;
mod connect_counter;
mod ebpf_log;
mod error;
mod object;

pub use cgroup::cgroup_id;
pub use connect_counter::ConnectCounter;
pub use ebpf_log::TracingLog;
pub use error::InterceptError;
pub use object::EBPF_OBJECT;
pub use pipelock_common::ConnectCount;
