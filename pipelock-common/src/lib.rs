//! The contract between Pipelock's kernel programs (`pipelock-ebpf`) and its user space.
//!
//! Every map key, map value and event record that crosses the kernel boundary is declared
//! here once, `#[repr(C)]`, so both sides agree on the layout. The crate is `no_std`; the
//! `user` feature adds the `aya::Pod` impls user space needs to read the maps.
#![no_std]
