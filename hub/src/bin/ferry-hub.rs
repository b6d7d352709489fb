fn main() -> std::process::ExitCode {
    ferry_malloc::bound_arenas();
    ferry_hub::cli::main()
}
