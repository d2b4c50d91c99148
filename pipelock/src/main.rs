/// mimalloc instead of glibc's allocator: the scanners and the relay allocate many small,
/// short-lived buffers per message (parsed JSON, text views, headers), where it is faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pipelock::cli::main()
}
