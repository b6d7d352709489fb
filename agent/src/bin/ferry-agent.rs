fn main() -> std::process::ExitCode {
    ferry_agent::cli::main()
}
