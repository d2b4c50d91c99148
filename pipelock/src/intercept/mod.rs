//! Transparent interception: Pipelock's eBPF programs, loaded into the kernel and attached to
//! the cgroups of the applications it guards.
//!
//! The object is built from `pipelock-ebpf` by `build.rs` and embedded in the binary, so a
//! deployed `pipelock` needs nothing else on disk. The kernel/user contract (names, map
//! layouts) is `pipelock-common`.
//!
//! - `interception`: [`Interception`] (load or re-adopt, attach, original destinations, kill
//!   switch, denied events, counters) and [`detach`]; `mark`: [`mark_socket`], the `SO_MARK`
//!   that keeps Pipelock's own sockets out of the redirect;
//! - `settings`: what user space tells the programs ([`InterceptSettings`], [`AllowRule`]);
//! - `hooks`: the cgroup hooks and what is attached to them (foreign programs included);
//! - `pins`: the pin root's layout on bpffs; `maps`: typed map handles and counters;
//! - `events`: the denied-event stream; `status`: [`status`] for `pipelock status`;
//! - `cgroup`: cgroup v2 paths and ids; `ebpf_log`: the programs' aya-log records;
//!   `object`: the embedded object; `error`: [`InterceptError`].

mod cgroup;
mod ebpf_log;
mod error;
mod events;
mod hooks;
mod interception;
pub mod live;
mod maps;
mod mark;
mod object;
mod pins;
mod settings;
mod status;

pub use cgroup::cgroup_id;
pub use ebpf_log::TracingLog;
pub use error::InterceptError;
pub use events::{DeniedEvent, DeniedEvents, DenyReason};
pub use interception::{detach, Interception};
pub use maps::InterceptStats;
pub use mark::mark_socket;
pub use object::EBPF_OBJECT;
pub use settings::{AllowRule, InterceptSettings, Protocol, DEFAULT_MARK};
pub use status::{status, Attachment, InterceptStatus, MapStatus, ProgramStatus, SettingsStatus};

/// Default pin root (config `intercept.pin_path`).
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/pipelock";

// The transparent listener asks for original destinations from many tasks at once.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Interception>();
};
