fn main() -> std::process::ExitCode {
    pipelock::cli::main()
}
