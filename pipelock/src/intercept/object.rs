//! The embedded eBPF object (built by `pipelock/build.rs` from `pipelock-ebpf`).

/// The BPF ELF object holding every Pipelock kernel program, aligned for aya's parser.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pipelock-ebpf"));
