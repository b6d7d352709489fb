fn main() -> std::process::ExitCode {
    ferry_hub::cli::main()
}
