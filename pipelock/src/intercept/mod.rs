//! Transparent interception: loading and attaching Pipelock's eBPF programs.
